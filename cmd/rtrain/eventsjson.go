package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/trainer"
)

// eventLine is one line `rtrain fit --events FILE` writes as the job goes:
// what a program following the job (a sweep's scheduler) acts on. The
// format is in pyshim/PROTOCOL.md.
type eventLine struct {
	Type       trainer.EventType  `json:"type"`
	Time       time.Time          `json:"time"`
	State      trainer.State      `json:"state,omitempty"`
	Queued     bool               `json:"queued,omitempty"`
	Message    string             `json:"message,omitempty"`
	Metrics    *pyshim.Metrics    `json:"metrics,omitempty"`
	Checkpoint *outcomeCheckpoint `json:"checkpoint,omitempty"`
	// WithCheckpoint, on a report: its checkpoint event is to come.
	WithCheckpoint bool `json:"with_checkpoint,omitempty"`
	Attempt        int  `json:"attempt,omitempty"`
}

// eventStream writes a job's events as JSON lines, one flushed write each,
// so a reader sees whole lines as they happen.
type eventStream struct {
	mu  sync.Mutex
	w   io.WriteCloser
	err error
}

// openEvents opens path (a file, or /dev/fd/N that a parent process
// passed) for --events.
func openEvents(path string) (*eventStream, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, usageError{fmt.Errorf("--events: %w", err)}
	}
	return &eventStream{w: f}, nil
}

func (s *eventStream) event(e trainer.Event) {
	line := eventLine{Type: e.Type, Time: e.Time, State: e.State, Queued: e.Queued, Message: e.Message, Attempt: e.Attempt}
	switch e.Type {
	case trainer.EventState, trainer.EventWarning, trainer.EventRestart:
	case trainer.EventReport:
		// Rank 0's metrics are the job's.
		if e.Rank != 0 {
			return
		}
		line.Metrics = &e.Metrics
		line.WithCheckpoint = e.WithCheckpoint
	case trainer.EventCheckpoint:
		if e.Checkpoint == nil {
			return
		}
		c := checkpointOf(*e.Checkpoint)
		line.Checkpoint = &c
	default:
		return
	}
	b, err := json.Marshal(line)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		// A reader that went away must not stop the job.
		_, s.err = s.w.Write(append(b, '\n'))
	}
}

func (s *eventStream) Close() error { return s.w.Close() }
