package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/trainer"
)

// statusLine is the live line `rtrain fit` keeps at the bottom of a
// terminal: workers up, the latest report, checkpoint upload speed. Output
// lines are printed above it: clear, print, draw.
type statusLine struct {
	w     io.Writer
	width int
	shown bool

	up, world   int
	attempt     int
	reports     int
	metrics     string
	checkpoints int
	rate        string
	state       trainer.State
}

// progressMode decides between the live line and plain lines: "auto" is
// the live line when stderr is a terminal.
func newStatusLine(mode string, w io.Writer) (*statusLine, error) {
	switch mode {
	case "plain":
		return nil, nil
	case "tty":
	case "auto":
		f, ok := w.(*os.File)
		if !ok {
			return nil, nil
		}
		fi, err := f.Stat()
		if err != nil || fi.Mode()&os.ModeCharDevice == 0 || os.Getenv("TERM") == "dumb" {
			return nil, nil
		}
	default:
		return nil, usageError{fmt.Errorf("--progress %q: want auto, tty or plain", mode)}
	}
	return &statusLine{w: w, width: 120}, nil
}

func (s *statusLine) clear() {
	if s == nil || !s.shown {
		return
	}
	fmt.Fprint(s.w, "\r\x1b[2K")
	s.shown = false
}

func (s *statusLine) update(e trainer.Event) {
	if s == nil {
		return
	}
	switch e.Type {
	case trainer.EventState:
		s.state = e.State
		if e.State == trainer.StateStarting {
			s.up = 0
		}
	case trainer.EventWorkerStarted:
		s.up++
	case trainer.EventWorkerExited:
		s.up--
	case trainer.EventReport:
		if e.Rank == 0 {
			s.reports++
			s.metrics = formatMetrics(e.Metrics)
		}
	case trainer.EventRestart:
		s.attempt = e.Attempt
	case trainer.EventCheckpoint:
		s.checkpoints++
		if c := e.Checkpoint; c.Took > 0 {
			s.rate = text.Bytes(int64(float64(c.Bytes)/c.Took.Seconds())) + "/s"
		}
	}
}

func (s *statusLine) draw() {
	if s == nil || s.state.Done() || s.state == "" {
		return
	}
	parts := []string{fmt.Sprintf("%s, %d up", strings.ToLower(string(s.state)), s.up)}
	if s.attempt > 0 {
		parts = append(parts, fmt.Sprintf("attempt %d", s.attempt))
	}
	if s.reports > 0 {
		parts = append(parts, fmt.Sprintf("report %d: %s", s.reports, s.metrics))
	}
	if s.checkpoints > 0 {
		c := text.Plural(s.checkpoints, "checkpoint")
		if s.rate != "" {
			c += " at " + s.rate
		}
		parts = append(parts, c)
	}
	line := "rtrain: " + strings.Join(parts, " | ")
	if len(line) > s.width {
		line = line[:s.width-3] + "..."
	}
	fmt.Fprint(s.w, line)
	s.shown = true
}
