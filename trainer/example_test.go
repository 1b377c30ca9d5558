package trainer_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/rtrain/rtrain/trainer"
)

// A 2-worker job of the example script on this machine's embedded node,
// watched through OnEvent. The program's main must call
// launcher.RunReaperIfAsked first (this package's TestMain does).
func Example() {
	results, _ := os.MkdirTemp("", "rtrain-example-")
	defer os.RemoveAll(results)
	// Checkpoints upload while training goes on, so their events
	// interleave with later reports; collect them.
	var committed []int
	t, err := trainer.New(trainer.Config{
		Script:     "../examples/train_rtrain.py",
		Args:       []string{"--epochs", "2"},
		Workers:    2,
		ResultsDir: results,
		OnEvent: func(e trainer.Event) {
			switch e.Type {
			case trainer.EventReport:
				if e.Rank == 0 {
					fmt.Println("report: epoch", e.Metrics.Values["epoch"])
				}
			case trainer.EventCheckpoint:
				committed = append(committed, e.Checkpoint.Index)
			case trainer.EventState:
				if e.State.Done() {
					fmt.Println("state:", e.State)
				}
			}
		},
	}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := t.Fit(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Reports, "reports; checkpoints", committed, "latest", res.Latest.Index)
	// Output:
	// report: epoch 0
	// report: epoch 1
	// state: SUCCEEDED
	// 2 reports; checkpoints [1 2] latest 2
}

// Resuming a run: the second Fit continues the first run's name from its
// latest committed checkpoint, which every rank gets from
// rtrain.get_checkpoint().
func ExampleConfig_resume() {
	results, _ := os.MkdirTemp("", "rtrain-example-")
	defer os.RemoveAll(results)
	cfg := trainer.Config{
		Script:     "../examples/train_rtrain.py",
		Args:       []string{"--epochs", "2"},
		Workers:    2,
		ResultsDir: results,
		Name:       "resumable",
	}
	fit := func(cfg trainer.Config) (*trainer.Result, error) {
		t, err := trainer.New(cfg, nil)
		if err != nil {
			return nil, err
		}
		return t.Fit(context.Background())
	}
	if _, err := fit(cfg); err != nil {
		fmt.Println(err)
		return
	}
	// The same name again without Resume is refused: no silent overwrite.
	_, err := fit(cfg)
	fmt.Println("refused:", errors.Is(err, trainer.ErrInvalidConfig))

	cfg.Resume = true
	cfg.Args = []string{"--epochs", "3"}
	res, err := fit(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("reports after resuming:", res.Reports, "latest checkpoint:", res.Latest.Index)
	// Output:
	// refused: true
	// reports after resuming: 1 latest checkpoint: 3
}

// Cancelling the context stops every worker; Fit returns ErrCancelled.
func ExampleTrainer_Fit_cancel() {
	results, _ := os.MkdirTemp("", "rtrain-example-")
	defer os.RemoveAll(results)
	ctx, cancel := context.WithCancel(context.Background())
	t, _ := trainer.New(trainer.Config{
		Script:     "../examples/train_rtrain.py",
		Args:       []string{"--epochs", "1000"},
		Workers:    2,
		ResultsDir: results,
		OnEvent: func(e trainer.Event) {
			if e.Type == trainer.EventState && e.State == trainer.StateRunning {
				cancel()
			}
		},
	}, nil)
	res, err := t.Fit(ctx)
	fmt.Println(res.State, errors.Is(err, trainer.ErrCancelled))
	// Output: CANCELLED true
}
