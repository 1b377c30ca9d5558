package trainer

import (
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/rtrain/rtrain/cluster"
)

// The root cause of a failed attempt is found in two steps, both pure:
// exitOf judges each worker's exit as it comes (when it failed, whether it
// failed by itself or rtrain stopped it, whether the hang watchdog did),
// and newJobError picks, from every exit of the attempt, the worker that
// failed first and sorts the rest into the peers that failed after it and
// those that were stopped.

// exitOf is how the worker of exit event e (cluster.WorkerExited) ended.
// pid is its process id; hung, when set, is the hang watchdog's cause for
// stopping the job, which it judged hung at hungAt.
func exitOf(e cluster.Event, pid int, hung string, hungAt time.Time) WorkerExit {
	w := WorkerExit{Rank: e.Rank, Node: e.NodeID, PID: pid, Exit: e.Exit, Tail: e.Tail, Hung: hung, Exception: e.Exception, Return: e.Return}
	if e.CrashedInTeardown() {
		w.Hung, w.TeardownCrash = "", teardownCrash(e)
	}
	switch {
	case w.Success():
	case hung != "" && e.RaisedBeforeStop:
		// It raised and never finished exiting while its peers waited
		// for it: the hang is its doing.
		w.Hung, w.FailedAt = "", e.RaisedAt
	case hung != "":
		w.FailedAt = hungAt // all at once: rank order names the cause
	case w.Stopped && !e.RaisedBeforeStop:
		// rtrain ended it; it had not failed.
	default:
		// It may have raised well before it exited, or before rtrain's
		// stop ended its exit: the raise is when it failed.
		w.FailedAt = e.Exit.Time
		if !e.RaisedAt.IsZero() && e.RaisedAt.Before(w.FailedAt) {
			w.FailedAt = e.RaisedAt
		}
	}
	return w
}

// teardownCrash says how a worker that had finished died as Python shut
// down: the signal and the last line it wrote to stderr ("terminate called
// without an active exception").
func teardownCrash(e cluster.Event) string {
	msg := "crashed as Python shut down: " + e.Exit.String()
	for i := len(e.AfterFinish) - 1; i >= 0; i-- {
		if line := strings.TrimSpace(e.AfterFinish[i]); line != "" {
			return msg + ": " + line
		}
	}
	return msg
}

// newJobError is the failure of an attempt whose workers ended as exits
// say, nil when none failed.
func newJobError(exits []WorkerExit) *JobError {
	var failed, stopped []WorkerExit
	for _, w := range exits {
		switch {
		case w.Hung != "":
			failed = append(failed, w)
		case w.Stopped && w.FailedAt.IsZero():
			stopped = append(stopped, w)
		case !w.Success():
			failed = append(failed, w)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	// The rank that failed first is the cause, not the first to exit: its
	// death brings its peers down with "connection closed" errors that can
	// end their processes before its own has finished exiting. Those errors,
	// and hangs, may only echo a failure elsewhere, so they come after every
	// other, however early: a SIGKILLed rank's end is seen a moment after the
	// kernel has already closed its sockets and its peers have raised, and a
	// rank that raises while the others hang waiting for it is why they hang.
	sort.SliceStable(failed, func(i, j int) bool {
		if a, b := failed[i].echo(), failed[j].echo(); a != b {
			return b
		}
		return failed[i].FailedAt.Before(failed[j].FailedAt)
	})
	return &JobError{Cause: failed[0], Failed: failed[1:], Stopped: stopped}
}

// peerLossError matches the errors a rank raises when a peer it talks to
// is gone: gloo's and the TCPStore's socket errors, NCCL's aborts and
// watchdog timeouts.
var peerLossError = regexp.MustCompile(`Connection (closed|reset) by peer|Broken pipe|` +
	`remote process exited or there was a network error|NCCL communicator was aborted|` +
	`Watchdog caught collective operation timeout|Timed out waiting .* for (recv|send) operation`)

// echo reports whether the worker's failure may only echo another's: its
// exception is one of peerLossError's, or it hung, as ranks waiting in a
// collective for one that failed do.
func (w WorkerExit) echo() bool {
	return w.Hung != "" || peerLossError.MatchString(w.Cause())
}
