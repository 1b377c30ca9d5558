// Command embed runs a real training job from Go, the way an ML platform
// embeds rtrain: a 2-worker DDP job of examples/train_rtrain.py on the
// embedded node of this machine, printing each metrics report as it
// arrives. Run it from the repository root:
//
//	go run ./examples/embed
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/trainer"
)

func main() {
	// Workers run under a reaper that is this very binary: when it is
	// re-executed as one, this call runs the reaper and never returns.
	if launcher.RunReaperIfAsked() {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	results, err := os.MkdirTemp("", "rtrain-embed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(results)

	t, err := trainer.New(trainer.Config{
		Script:     "examples/train_rtrain.py",
		Args:       []string{"--epochs", "3"},
		Workers:    2,
		ResultsDir: results, // logs, and checkpoints since Storage is unset
		Checkpoint: trainer.CheckpointConfig{Keep: 1},
		OnEvent: func(e trainer.Event) {
			// Every rank reports; rank 0's metrics are the job's.
			if e.Type == trainer.EventReport && e.Rank == 0 {
				fmt.Printf("epoch %v: loss %v\n", e.Metrics.Values["epoch"], e.Metrics.Values["loss"])
			}
		},
	}, nil)
	if err != nil {
		return err
	}
	res, err := t.Fit(ctx)
	var jerr *trainer.JobError
	if errors.As(err, &jerr) {
		return fmt.Errorf("rank %d failed: %s", jerr.Cause.Rank, jerr.Cause.Cause())
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d reports, latest checkpoint %s\n", res.State, res.Reports, res.Latest.URI)
	return nil
}
