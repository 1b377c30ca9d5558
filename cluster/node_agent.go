package cluster

import (
	"context"
	"errors"

	"github.com/rtrain/rtrain/cluster/sched"
)

// NodeAgent is a node's agent as the job coordinator drives it: the
// embedded one in this process (*Agent) or one across the network
// (*RemoteAgent). The coordinator's code is the same for both.
type NodeAgent interface {
	Node() sched.Node
	// Rendezvous prepares the rendezvous of a job whose rank 0 runs on
	// the node.
	Rendezvous(ctx context.Context, req RendezvousRequest) (Rendezvous, error)
	// StartGroup launches spec's workers on the node; see Agent.Start.
	StartGroup(ctx context.Context, spec GroupSpec, ship Shipment) (GroupRunner, error)
}

// GroupRunner is a started worker group: Events delivers what happens to
// its workers and closes when all have exited; Stop ends them.
type GroupRunner interface {
	Events() <-chan Event
	Stop()
	// DumpStacks asks every worker for its Python stacks, which arrive
	// as log lines on stderr.
	DumpStacks()
}

// Shipment is what a group needs on a node that does not share this one's
// files: the job's working directory (Script and Dir in the spec are then
// relative to it) and the python asked for, found on that node.
type Shipment struct {
	Workdir Workdir
	Python  string
}

// RendezvousRequest names the job and its torch: the version when known
// here, else the python to ask on the node.
type RendezvousRequest struct {
	JobID        string
	TorchVersion string
	Python       string
}

// GroupAttacher is a NodeAgent whose groups outlive the process that
// started them (a node agent reached over the network): a head that
// restarted, or took over, follows a running group again. from is the
// first event's seq to read (1: all); the events before replayed are
// marked Replayed.
type GroupAttacher interface {
	AttachGroup(ctx context.Context, spec GroupSpec, from, replayed int64) (GroupRunner, error)
}

// StagedReleaser is a GroupRunner whose node keeps the checkpoint files
// its workers staged until the job's checkpoint is committed; the job
// then releases them.
type StagedReleaser interface {
	ReleaseStaged(seq int)
}

// ErrGroupGone is matched by AttachGroup's error when the node has no such
// group (it stopped it, it ended and was forgotten, or never started).
var ErrGroupGone = errors.New("cluster: no such group on the node")

// GroupGoneError is AttachGroup's error for a group the node no longer
// runs: Why is the node's own word for it.
type GroupGoneError struct{ Why string }

func (e *GroupGoneError) Error() string { return e.Why }

// Is makes a GroupGoneError an ErrGroupGone.
func (e *GroupGoneError) Is(target error) bool { return target == ErrGroupGone }
