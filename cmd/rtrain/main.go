// Command rtrain runs PyTorch distributed training jobs.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rtrain/rtrain/cluster/agent"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/trainer"
)

// Exit codes.
const (
	exitOK        = 0
	exitFailed    = 1
	exitUsage     = 2
	exitCancelled = 130
)

func main() {
	if launcher.RunReaperIfAsked() {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	signalled := ctx.Err() != nil
	stop()
	var again standAgain
	if errors.As(err, &again) && !signalled {
		fmt.Fprintf(os.Stderr, "rtrain: %v; starting over as a standby\n", err)
		exe, xerr := os.Executable()
		if xerr == nil {
			xerr = syscall.Exec(exe, os.Args, os.Environ())
		}
		err = fmt.Errorf("%w (and could not start over: %w)", err, xerr)
	}
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	var usage usageError
	var jerr *trainer.JobError
	var cerr *trainer.CheckpointError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &jerr), errors.As(err, &cerr), errors.Is(err, errDoctor):
		// The summary already said it all.
		return exitFailed
	case errors.Is(err, trainer.ErrCancelled):
		fmt.Fprintln(os.Stderr, "rtrain: cancelled; every worker was stopped")
		return exitCancelled
	case errors.As(err, &usage), errors.Is(err, trainer.ErrInvalidConfig), errors.Is(err, agent.ErrInvalidNode):
		fmt.Fprintln(os.Stderr, "rtrain: "+err.Error())
		return exitUsage
	default:
		fmt.Fprintln(os.Stderr, "rtrain: "+err.Error())
		return exitFailed
	}
}

// usageError is a command line rtrain cannot make sense of.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
