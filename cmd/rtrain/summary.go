package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/trainer"
)

// summary prints the end of a run: how it ended and, on failure, the root
// cause with its traceback.
func (p *printer) summary(res *trainer.Result, err error) {
	d := res.Duration.Round(100 * time.Millisecond)
	w := p.err
	switch res.State {
	case trainer.StateSucceeded:
		restarts := ""
		if res.Restarts > 0 {
			restarts = ", " + text.Plural(res.Restarts, "restart")
		}
		fmt.Fprintf(w, "rtrain: run %s succeeded in %s: %s, %s%s\n", res.Name, d, text.Plural(len(res.Workers), "worker"), text.Plural(res.Reports, "report"), restarts)
	case trainer.StateCancelled:
		fmt.Fprintf(w, "rtrain: run %s cancelled after %s\n", res.Name, d)
	default:
		fmt.Fprintf(w, "rtrain: run %s failed after %s\n", res.Name, d)
	}
	if len(res.Metrics.Keys) > 0 {
		fmt.Fprintf(w, "  last metrics: %s\n", formatMetrics(res.Metrics))
	}
	for _, x := range res.Workers {
		if x.TeardownCrash != "" {
			fmt.Fprintf(w, "  rank %d finished, then %s (not a failure)\n", x.Rank, x.TeardownCrash)
		}
	}
	if res.ResumedFrom != "" {
		fmt.Fprintf(w, "  resumed from: %s\n", res.ResumedFrom)
	}
	if c := res.Latest; c != nil {
		fmt.Fprintf(w, "  latest checkpoint: %s\n", c.URI)
	}
	for i, c := range res.Best {
		if i == 3 {
			fmt.Fprintf(w, "  ... %d more kept\n", len(res.Best)-i)
			break
		}
		fmt.Fprintf(w, "  best checkpoint: %s (%s)\n", c.URI, strconv.FormatFloat(*c.Score, 'g', 6, 64))
	}
	var jerr *trainer.JobError
	var cerr *trainer.CheckpointError
	if errors.As(err, &cerr) {
		fmt.Fprintf(w, "  root cause: %s\n", cerr)
		fmt.Fprintf(w, "  the workers were stopped; earlier checkpoints are intact\n")
	}
	if errors.As(err, &jerr) {
		if len(jerr.Earlier) > 0 {
			for _, e := range append(jerr.Earlier, jerr) {
				fmt.Fprintf(w, "  attempt %d: %s\n", e.Attempt, attemptCause(e.Cause))
			}
		}
		if jerr.NoRestart != "" && jerr.Attempt > 0 {
			fmt.Fprintf(w, "  not restarted again: %s\n", jerr.NoRestart)
		}
		c := jerr.Cause
		fmt.Fprintf(w, "  root cause: rank %d on %s (pid %d) %s\n", c.Rank, c.Node, c.PID, exitAndCause(c))
		for _, line := range c.Traceback() {
			fmt.Fprintf(w, "    %s\n", line)
		}
		if len(jerr.Failed) > 0 {
			fmt.Fprintf(w, "  also failed: %s\n", rankList(jerr.Failed, true))
		}
		if len(jerr.Stopped) > 0 {
			fmt.Fprintf(w, "  stopped by rtrain after the failure: %s\n", rankList(jerr.Stopped, false))
		}
	}
	if res.LogDir != "" && len(res.Workers) > 0 {
		fmt.Fprintf(w, "  logs: %s\n", res.LogDir)
	}
	if res.ResultURI != "" {
		fmt.Fprintf(w, "  result: %s\n", res.ResultURI)
	}
}

func rankList(ws []trainer.WorkerExit, withCause bool) string {
	parts := make([]string, len(ws))
	for i, x := range ws {
		parts[i] = "rank " + strconv.Itoa(x.Rank)
		if withCause {
			parts[i] += " (" + x.Cause() + ")"
		}
	}
	return strings.Join(parts, ", ")
}

// formatMetrics prints metrics as key=value in the script's order, floats
// to 6 significant digits.
func formatMetrics(m pyshim.Metrics) string {
	parts := make([]string, 0, len(m.Keys))
	for _, k := range m.Keys {
		parts = append(parts, k+"="+formatValue(m.Values[k]))
	}
	return strings.Join(parts, " ")
}

func formatValue(v any) string {
	switch v := v.(type) {
	case interface{ Float64() (float64, error) }:
		s := fmt.Sprint(v)
		if strings.ContainsAny(s, ".eE") {
			if f, err := v.Float64(); err == nil {
				return strconv.FormatFloat(f, 'g', 6, 64)
			}
		}
		return s
	default:
		return fmt.Sprint(v)
	}
}

// attemptCause is one attempt's root cause on one line.
func attemptCause(c trainer.WorkerExit) string {
	return fmt.Sprintf("rank %d on %s %s", c.Rank, c.Node, exitAndCause(c))
}

// exitAndCause is how the worker ended and, when it says more, why.
func exitAndCause(c trainer.WorkerExit) string {
	s := c.Exit.String()
	if c.Stopped && c.Signal != 0 && c.Hung == "" {
		// It failed by itself, and was still exiting when rtrain stopped
		// the workers because of its own or a peer's exit.
		s += " as rtrain stopped it"
	}
	if cause := c.Cause(); cause != c.Exit.String() {
		s += ": " + cause
	}
	return s
}
