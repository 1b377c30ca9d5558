package cluster

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rtrain/rtrain/checkpoint/stage"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/rendezvous"
)

// Rendezvous is where a job's workers meet: MASTER_PORT on the node of
// rank 0, and whether the agent there hosts the store.
type Rendezvous struct {
	Port       int
	AgentStore bool
}

// WorkerSpec is one worker of a group.
type WorkerSpec struct {
	LocalRank int
	// GPUs are the worker's own GPU indices on this node.
	GPUs []int
}

// GroupSpec is the part of a job that runs on one node in one attempt.
type GroupSpec struct {
	JobID   string
	RunName string
	// Python runs Script with Args, or, when Module is set, runs the
	// module (`python -m Module Args...`) and Script is empty.
	Python string
	Script string
	Module string `json:",omitempty"`
	Args   []string
	// Env is the environment the workers start from (rtrain's own plus the
	// user's additions); the rendezvous contract is applied on top.
	Env []string
	// Dir is the workers' working directory.
	Dir      string
	Layout   rendezvous.Layout
	NodeRank int
	Workers  []WorkerSpec
	// LogDir receives rank_<N>.log for each worker.
	LogDir string
	// Grace is how long a worker has between SIGTERM and SIGKILL.
	Grace time.Duration
	// Stager receives the checkpoints workers attach to report(); nil
	// refuses them. A remote agent makes its own, holding at most
	// StagedInFlight reports (0: 1) until the head has fetched them.
	Stager         *stage.Area `json:"-"`
	StagedInFlight int
	// Restore, when set, is the checkpoint the workers resume from: they
	// find it through rtrain.get_checkpoint().
	Restore *Restore
	// Limits are what each worker is held to, and which GPUs it sees.
	Limits Limits
}

// Restore is a checkpoint copied to this node for the workers to resume
// from.
type Restore struct {
	// Dir is the local directory holding its files.
	Dir string
	// URI is where it is stored; Index is its number.
	URI   string
	Index int
}

// EventKind says what a worker event is.
type EventKind int

// The kinds of worker events, in the order a worker produces them.
const (
	WorkerStarted EventKind = iota + 1
	WorkerLog
	WorkerReport
	WorkerExited
	// NodeWarning comes before any worker starts, at most once per group:
	// Line says which isolation the node cannot enforce and why.
	NodeWarning
	// CheckpointLost: the files a worker staged for report Report.Seq
	// could not be brought to the head (Line says why); the group is
	// being stopped, and the checkpoint must not be committed.
	CheckpointLost
)

// Event is something that happened to a worker of a group.
type Event struct {
	Kind   EventKind
	NodeID string
	Rank   int
	Time   time.Time
	// WorkerStarted.
	PID int
	// WorkerLog: the stream ("stdout" or "stderr") and the line.
	Stream string
	Line   string
	// WorkerReport: the report, and where its checkpoint files were
	// staged (empty when the worker attached none).
	Report pyshim.Report
	Staged string
	// Files are the staged files' paths, relative to Staged.
	Files []string
	// WorkerExited: how it ended and the last lines of its stderr.
	Exit launcher.Exit
	Tail []string
	// WorkerExited: when an uncaught Python exception reached the top of
	// the worker, zero if none did (rtrain's sitecustomize notes it). The
	// rank that raised first is the cause, while it may exit after the
	// peers its death brought down. RaisedBeforeStop says it raised before
	// the group was told to stop: it failed by itself, even if the stop
	// is what ended its exit.
	RaisedAt         time.Time
	RaisedBeforeStop bool `json:",omitempty"`
	// Exception is the last line of that exception ("ValueError: boom"),
	// from the same note: what it raised even when a stop ended the worker
	// before its traceback reached stderr.
	Exception string `json:",omitempty"`
	// WorkerExited: what the worker's train function returned, pickled
	// (rank 0 of a job that runs a driver's function; at most
	// pyshim.MaxReturnBytes).
	Return []byte `json:",omitempty"`
	// WorkerExited: when the worker's program finished cleanly (ran to its
	// end or called sys.exit(0), and its atexit handlers ran), zero if it
	// did not. What the process does after that is Python's teardown.
	FinishedAt time.Time `json:",omitempty"`
	// AfterFinish are the lines of stderr that came after FinishedAt:
	// what the interpreter's teardown printed.
	AfterFinish []string `json:",omitempty"`

	// What the head makes of an event it reads from a node agent's
	// journal, not sent: Seq is its place in the group's events (from 1);
	// Replayed says an earlier head process saw it already, so it
	// rebuilds the attempt's state and is not told again; StagedReleased
	// says the report's staged files were released, its checkpoint
	// committed.
	Seq            int64 `json:"-"`
	Replayed       bool  `json:"-"`
	StagedReleased bool  `json:"-"`
}

// CrashedInTeardown reports whether the event is the exit of a worker that
// finished its program cleanly and was then killed by a signal rtrain did
// not send, as the interpreter shut down: a C++ thread of torch's that
// takes the GIL during finalization aborts the process ("terminate called
// without an active exception"). Its work is done; it is not a failure.
func (e Event) CrashedInTeardown() bool {
	return e.Kind == WorkerExited && !e.FinishedAt.IsZero() && e.Exit.Signal != 0 && !e.Exit.Stopped
}

// GPUIsolation says which of the node's GPUs a worker may open.
type GPUIsolation string

const (
	// IsolateJob walls each job off from every other: the workers of a job
	// on a node all open the job's GPUs there (so NCCL can use P2P between
	// them), and no other GPU. The zero value means IsolateJob.
	IsolateJob GPUIsolation = "job"
	// IsolateWorker lets each worker open its own GPUs only; NCCL falls
	// back from P2P to shared memory between the workers.
	IsolateWorker GPUIsolation = "worker"
)

// Limits are what each worker of a group is held to, through a cgroup of
// its own where the node can (see Agent.Start).
type Limits struct {
	// MemoryBytes caps each worker's memory, what it spawns included; the
	// kernel's OOM killer ends a worker over it. 0 is no limit.
	MemoryBytes int64
	// CPUs is each worker's CPU time, in cores, as a CFS quota. 0 is none.
	CPUs float64
	// Pids caps the processes and threads of each worker. 0 is no limit.
	Pids int64
	// GPUIsolation is which GPUs a worker sees and may open.
	GPUIsolation GPUIsolation
	// Strict refuses to start a group this node cannot isolate fully;
	// otherwise it runs with what the node can enforce, and a NodeWarning
	// event says what is missing and why.
	Strict bool
}

// CgroupParentEnv names the cgroup under which the agent makes its
// workers' groups, <parent>/<job id>/<node>-attempt-<A>/rank-<N> in every
// hierarchy, where an operator may set node-wide limits; unset, "rtrain".
const CgroupParentEnv = "RTRAIN_CGROUP_PARENT"

// ErrNotIsolated is wrapped by the error of Agent.Start for a group with
// Limits.Strict that the node cannot isolate fully.
var ErrNotIsolated = errors.New("cluster: cannot isolate the workers")

// IsolationError says which isolation a node cannot give and why.
type IsolationError struct {
	Node string
	// Missing names each kind of isolation asked for and not available:
	// "memory limit", "CPU limit", "pids limit", "GPU device isolation".
	Missing []string
	// Reason is why.
	Reason error
}

func (e *IsolationError) Error() string {
	return fmt.Sprintf("node %s cannot enforce %s: %v", e.Node, strings.Join(e.Missing, ", "), e.Reason)
}

// Unwrap makes an IsolationError an ErrNotIsolated and keeps its reason.
func (e *IsolationError) Unwrap() []error { return []error{ErrNotIsolated, e.Reason} }
