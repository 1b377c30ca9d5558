package trainer

import (
	"time"

	"github.com/rtrain/rtrain/pyshim"
)

// State is where a job is in its life.
type State string

// The states of a job, in order; a job ends in exactly one of the last three.
const (
	StatePending   State = "PENDING"   // checking the config, finding python
	StateStarting  State = "STARTING"  // resources reserved, workers starting
	StateRunning   State = "RUNNING"   // every worker started
	StateSucceeded State = "SUCCEEDED" // every worker exited 0
	StateFailed    State = "FAILED"    // a worker failed; see JobError
	StateCancelled State = "CANCELLED" // the context ended first
)

// Done reports whether s is a final state.
func (s State) Done() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCancelled || s == StateLost
}

// EventType says which fields of an Event are set.
type EventType string

// The event types.
const (
	// EventState: State changed; Message may say why.
	EventState EventType = "state"
	// EventWorkerStarted: Rank started as process PID on Node.
	EventWorkerStarted EventType = "worker_started"
	// EventLog: one line (Stream, Line) of Rank's output.
	EventLog EventType = "log"
	// EventReport: Rank called rtrain.report(Metrics).
	EventReport EventType = "report"
	// EventWorkerExited: Rank ended as Exit says.
	EventWorkerExited EventType = "worker_exited"
	// EventCheckpoint: Checkpoint was committed to storage: every rank had
	// reported it and every file was stored and verified.
	EventCheckpoint EventType = "checkpoint"
	// EventWarning: something the job runs on without, in Message: an
	// isolation Node cannot enforce (Config.MemoryPerWorker, GPU device
	// rules, ...; at most one per node, before its workers start), or a
	// checkpoint upload that failed and is being retried.
	EventWarning EventType = "warning"
	// EventRestart: the workers failed (Exit is the root cause) and the
	// job restarts them as Attempt (1 for the first restart), from the
	// latest committed checkpoint; Message says why and from where.
	EventRestart EventType = "restart"
)

// Event is one thing that happened to a job.
//
// Events arrive in order, one call at a time (never two at once): the first is a PENDING
// state and the last is the final state (SUCCEEDED, FAILED or CANCELLED),
// after every other event. A rank's worker_started comes before its logs
// and reports, its worker_exited after them. Checkpoints come in index
// order, each after the reports of every rank that made it; since uploads
// run while training goes on, a checkpoint event may follow later reports.
type Event struct {
	Type EventType
	Time time.Time

	State   State
	Message string
	// Queued, on a PENDING state: the scheduler holds the job until
	// resources free up; Message says what it waits for.
	Queued bool `json:",omitempty"`

	Rank int
	Node string
	PID  int

	Stream string
	Line   string

	Metrics pyshim.Metrics
	// WithCheckpoint, on a report: the rank attached files, which become
	// a checkpoint (an EventCheckpoint) once every rank has reported.
	WithCheckpoint bool `json:",omitempty"`

	Exit *WorkerExit

	Attempt int `json:",omitempty"`

	Checkpoint *Checkpoint

	// GroupSeq, on an event that came from Node's worker group, is its
	// place among that group's events: the head keeps how far it got, so
	// that another head that adopts the job passes on only what comes
	// after. Not sent.
	GroupSeq int64 `json:"-"`
}
