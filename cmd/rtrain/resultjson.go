package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/trainer"
)

// outcomeVersion is the version of --result-json's format; a reader
// refuses one it does not know. The format is in pyshim/PROTOCOL.md.
const outcomeVersion = 1

// outcome is what `rtrain fit --result-json FILE` writes when the job ends:
// how it ended, for the Python driver (rtrain.torch.TorchTrainer.fit) and
// any other program that runs rtrain fit.
type outcome struct {
	Version     int                 `json:"version"`
	Name        string              `json:"name"`
	JobID       string              `json:"job_id,omitempty"`
	State       trainer.State       `json:"state"`
	RunDir      string              `json:"run_dir,omitempty"`
	Storage     string              `json:"storage,omitempty"`
	Metrics     pyshim.Metrics      `json:"metrics"`
	Reports     int                 `json:"reports"`
	History     []pyshim.Metrics    `json:"history"`
	Latest      *outcomeCheckpoint  `json:"latest_checkpoint"`
	Best        []outcomeCheckpoint `json:"best_checkpoints"`
	ResumedFrom string              `json:"resumed_from,omitempty"`
	Restarts    int                 `json:"restarts"`
	Error       *outcomeError       `json:"error"`
	Checkpoints []outcomeCheckpoint `json:"checkpoints"`
	Workers     []outcomeWorker     `json:"workers"`
	// Return is what rank 0's train function returned, pickled (base64
	// in the JSON).
	Return []byte `json:"return_value,omitempty"`
	mu     sync.Mutex
}

type outcomeCheckpoint struct {
	URI     string         `json:"uri"`
	Index   int            `json:"index"`
	Score   *float64       `json:"score,omitempty"`
	Metrics map[string]any `json:"metrics"`
}

type outcomeWorker struct {
	Rank int    `json:"rank"`
	Node string `json:"node,omitempty"`
	Exit string `json:"exit"`
	OK   bool   `json:"ok"`
}

// outcomeError is a job that did not succeed. Kind is how a program tells
// the cases apart: "invalid_config" (bad input: nothing ran), "failed" (a
// worker failed; RootCause and WorkerFailures say which and why),
// "cancelled" (stopped by a signal or rtrain stop), "error" (anything else,
// such as an unreachable head).
type outcomeError struct {
	Kind           string            `json:"kind"`
	Message        string            `json:"message"`
	RootCause      *outcomeCause     `json:"root_cause,omitempty"`
	WorkerFailures map[string]string `json:"worker_failures,omitempty"`
}

type outcomeCause struct {
	Rank      int      `json:"rank"`
	Node      string   `json:"node,omitempty"`
	Exit      string   `json:"exit"`
	Cause     string   `json:"cause"`
	Traceback []string `json:"traceback"`
}

// event keeps what the outcome needs of e: the checkpoints committed.
func (o *outcome) event(e trainer.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch e.Type {
	case trainer.EventCheckpoint:
		if c := e.Checkpoint; c != nil {
			o.Checkpoints = append(o.Checkpoints, checkpointOf(*c))
		}
	}
}

func checkpointOf(c trainer.Checkpoint) outcomeCheckpoint {
	return outcomeCheckpoint{URI: c.URI, Index: c.Index, Score: c.Score, Metrics: c.Metrics}
}

// finish fills the outcome in from the job's result and error.
func (o *outcome) finish(ctx context.Context, res *trainer.Result, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.Version = outcomeVersion
	o.History = []pyshim.Metrics{}
	if o.Checkpoints == nil {
		o.Checkpoints = []outcomeCheckpoint{}
	}
	o.Best = []outcomeCheckpoint{}
	o.Workers = []outcomeWorker{}
	if res != nil {
		o.Name, o.JobID, o.State, o.RunDir, o.Storage = res.Name, res.JobID, res.State, res.RunDir, res.Storage
		o.Metrics, o.Reports, o.ResumedFrom, o.Restarts = res.Metrics, res.Reports, res.ResumedFrom, res.Restarts
		if res.History != nil {
			o.History = res.History
		}
		if res.Latest != nil {
			c := checkpointOf(*res.Latest)
			o.Latest = &c
		}
		for _, c := range res.Best {
			o.Best = append(o.Best, checkpointOf(c))
		}
		for _, w := range res.Workers {
			o.Workers = append(o.Workers, outcomeWorker{Rank: w.Rank, Node: w.Node, Exit: w.Exit.String(), OK: w.Success()})
			if w.Rank == 0 {
				o.Return = w.Return
			}
		}
	}
	if err == nil {
		return
	}
	oe := &outcomeError{Kind: "error", Message: err.Error()}
	var jerr *trainer.JobError
	switch {
	case errors.As(err, &jerr):
		oe.Kind = "failed"
		c := jerr.Cause
		oe.RootCause = &outcomeCause{Rank: c.Rank, Node: c.Node, Exit: c.Exit.String(), Cause: c.Cause(), Traceback: c.Traceback()}
		oe.WorkerFailures = map[string]string{strconv.Itoa(c.Rank): c.Cause()}
		for _, w := range jerr.Failed {
			oe.WorkerFailures[strconv.Itoa(w.Rank)] = w.Cause()
		}
	case errors.Is(err, trainer.ErrInvalidConfig):
		oe.Kind = "invalid_config"
	case errors.Is(err, trainer.ErrCancelled) || ctx.Err() != nil:
		oe.Kind = "cancelled"
	}
	if o.State == "" {
		o.State = trainer.StateFailed
		if oe.Kind == "cancelled" {
			o.State = trainer.StateCancelled
		}
	}
	o.Error = oe
}

// write puts the outcome in path atomically: a reader sees all of it or
// none.
func (o *outcome) write(path string) error {
	o.mu.Lock()
	b, err := json.MarshalIndent(o, "", "  ")
	o.mu.Unlock()
	if err != nil {
		return fmt.Errorf("--result-json: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".result-*.json")
	if err != nil {
		return fmt.Errorf("--result-json: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("--result-json: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("--result-json: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("--result-json: %w", err)
	}
	return nil
}
