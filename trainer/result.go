package trainer

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/pyshim"
)

// WorkerExit is how one worker ended.
type WorkerExit struct {
	Rank int
	Node string
	PID  int
	launcher.Exit
	// Tail is the end of the worker's stderr.
	Tail []string
	// FailedAt is the first sign of the failure: when an uncaught Python
	// exception reached the top of the worker, else its exit. Zero for a
	// worker that succeeded and for one rtrain stopped before it failed.
	FailedAt time.Time
	// Hung, when set, says the job made no progress for
	// Config.HangTimeout and rtrain stopped the worker; its Tail then ends
	// with its Python stacks.
	Hung string `json:",omitempty"`
	// TeardownCrash, when set, says the worker finished its program
	// cleanly and was then killed by a signal as Python shut down (how,
	// and its last line of stderr). Its work was done: it succeeded.
	TeardownCrash string `json:",omitempty"`
	// Exception is the last line of the exception the worker raised, as
	// its exit note gives it, when it raised one.
	Exception string `json:",omitempty"`
	// Return is what the worker's train function returned, pickled by
	// the rtrain Python package: rank 0's, for a job that runs a driver's
	// function (Config.Function).
	Return []byte `json:",omitempty"`
}

// Success reports whether the worker did its work: it exited 0 by itself,
// or crashed only in Python's teardown after its program had finished.
func (w WorkerExit) Success() bool { return w.Exit.Success() || w.TeardownCrash != "" }

// Cause is the one line that says why the worker failed: out of memory
// when the kernel killed it for its memory limit, else the exception line
// of its last Python traceback when there is one, else how it ended. A
// traceback that followed the OOM kill of a process the worker spawned (a
// DataLoader worker, say) is marked so.
func (w WorkerExit) Cause() string {
	if w.Hung != "" {
		return w.Hung
	}
	if w.OutOfMemory() {
		return w.Exit.String()
	}
	tb := -1
	for i := len(w.Tail) - 1; i >= 0; i-- {
		if strings.HasPrefix(w.Tail[i], "Traceback (most recent call last)") {
			tb = i
			break
		}
	}
	if tb >= 0 {
		for i := len(w.Tail) - 1; i > tb; i-- {
			if line := strings.TrimSpace(w.Tail[i]); exceptionLine.MatchString(line) {
				if w.OOMKills > 0 {
					were := "were"
					if w.OOMKills == 1 {
						were = "was"
					}
					line += fmt.Sprintf(" (after %d of its processes %s killed: out of memory)", w.OOMKills, were)
				}
				return line
			}
		}
	}
	if w.Exception != "" {
		// Stopped before its traceback was written: the note says it.
		return w.Exception
	}
	return w.Exit.String()
}

// exceptionLine is the last line of a traceback: a (dotted) exception class
// name, then its message.
var exceptionLine = regexp.MustCompile(`^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning)\b`)

// Traceback is the last Python traceback in the worker's stderr, or the last
// lines of it when there is none.
func (w WorkerExit) Traceback() []string {
	if w.Hung != "" {
		// faulthandler's dump: one block per thread, the current one first.
		for i, line := range w.Tail {
			if strings.HasPrefix(line, "Thread 0x") || strings.HasPrefix(line, "Current thread 0x") {
				return w.Tail[i:]
			}
		}
	}
	for i := len(w.Tail) - 1; i >= 0; i-- {
		if strings.HasPrefix(w.Tail[i], "Traceback (most recent call last)") {
			return w.Tail[i:]
		}
	}
	return w.Tail[max(len(w.Tail)-10, 0):]
}

// JobError is a job that failed because a worker did. Cause is the worker
// that failed first; Failed are the others that failed by themselves;
// Stopped are those rtrain stopped because of the failure.
type JobError struct {
	Cause   WorkerExit
	Failed  []WorkerExit
	Stopped []WorkerExit
	// Attempt is the attempt that failed, 0 for the first.
	Attempt int `json:",omitempty"`
	// Earlier are the failures of the attempts before, when the job was
	// restarted; NoRestart says why it was not restarted again.
	Earlier   []*JobError `json:",omitempty"`
	NoRestart string      `json:",omitempty"`
}

func (e *JobError) Error() string {
	exit, cause := e.Cause.Exit.String(), e.Cause.Cause()
	if cause == exit {
		return fmt.Sprintf("rank %d failed: %s", e.Cause.Rank, exit)
	}
	return fmt.Sprintf("rank %d failed (%s): %s", e.Cause.Rank, exit, cause)
}

// MaxHistory and MaxHistoryBytes bound Result.History (its reports, their
// size as JSON), so that a job that reports every step for days still ends
// with a result that fits one message from a head.
const (
	MaxHistory      = 10_000
	MaxHistoryBytes = 1 << 20
)

// Result is what a finished job leaves.
type Result struct {
	// Name is the run's name; RunDir its local directory; LogDir holds
	// rank_<N>.log for each worker.
	Name   string
	RunDir string
	LogDir string
	// JobID is the job's id, as `rtrain jobs` and `rtrain logs` name it.
	JobID string
	State State
	// Python is the interpreter the workers ran.
	Python Interpreter
	// Metrics are rank 0's last report; Reports counts rank 0's reports.
	Metrics pyshim.Metrics
	Reports int
	// History are rank 0's reports' metrics in order, every attempt's, up
	// to the first MaxHistory or MaxHistoryBytes.
	History []pyshim.Metrics `json:",omitempty"`
	// Storage is the URI of the run's directory in storage; ResultURI the
	// result.json written there at the end.
	Storage   string
	ResultURI string
	// Latest is the newest committed checkpoint, the one --resume starts
	// from; nil when there is none. Best are the kept checkpoints that have
	// the CheckpointConfig.Score metric, best first. Neither names a
	// checkpoint that retention deleted.
	Latest *Checkpoint
	Best   []Checkpoint
	// ResumedFrom is the URI of the checkpoint the workers started from.
	ResumedFrom string
	// Restarts counts the times the workers were restarted after a
	// failure (Config.MaxFailures).
	Restarts int `json:",omitempty"`
	// Workers is how each worker ended, by rank, in the last attempt.
	Workers  []WorkerExit
	Started  time.Time
	Duration time.Duration
}
