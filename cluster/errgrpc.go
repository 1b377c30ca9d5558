package cluster

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/errgrpc"
	"github.com/rtrain/rtrain/internal/workdir"
)

// The reasons under which the sentinels that cluster's servers send travel
// between processes, with their codes: a client's error matches the same
// sentinel with errors.Is (errgrpc). The reasons are the protocol's
// vocabulary, read by other rtrain versions: never rename one.
func init() {
	errgrpc.Register(ErrNotIsolated, codes.FailedPrecondition, "NOT_ISOLATED")
	// A lost node's work is aborted; the job, not the call, may retry.
	errgrpc.Register(ErrNodeLost, codes.Aborted, "NODE_LOST")
	errgrpc.Register(sched.ErrInfeasible, codes.FailedPrecondition, "INFEASIBLE")
	errgrpc.Register(sched.ErrWouldWait, codes.ResourceExhausted, "WOULD_WAIT")
	// A head's refusal of a working directory over its limit, whose
	// ErrorInfo metadata "limit" is the limit in bytes (WorkdirLimit).
	errgrpc.Register(workdir.ErrTooLarge, codes.ResourceExhausted, "WORKDIR_TOO_LARGE")
	// A standby head's refusal, whose ErrorInfo metadata "leader" is the
	// leader's address where the standby knows it (LeaderHint).
	// Unavailable: the call may succeed at another head, and clients that
	// know nothing of the reason retry it as they would a head that is down.
	errgrpc.Register(ErrNotLeader, codes.Unavailable, "NOT_LEADER")
}

// ErrNotLeader is matched by the errors of calls that a standby head
// refused: only the leader serves them, and a client goes to it.
var ErrNotLeader = errors.New("cluster: this head is a standby")

// NotLeaderError is a standby head's refusal of a call, naming the leader.
// A head returns it made by NotLeader, which gives it the metadata that
// carries Leader over the wire; a client reads Leader with LeaderHint.
type NotLeaderError struct {
	// Leader is the leader's address, HOST:PORT; "" when the standby does
	// not know it (an election under way).
	Leader string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return ErrNotLeader.Error() + " and knows no leader yet"
	}
	return ErrNotLeader.Error() + "; the leader is at " + e.Leader
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// leaderKey is the ErrorInfo metadata of a NOT_LEADER refusal that names
// the leader's address.
const leaderKey = "leader"

// NotLeader is what a standby head returns from the calls only the leader
// serves: a *NotLeaderError that carries leader ("" when unknown) to the
// client in its ErrorInfo.
func NotLeader(leader string) error {
	var md map[string]string
	if leader != "" {
		md = map[string]string{leaderKey: leader}
	}
	return errgrpc.WithMetadata(&NotLeaderError{Leader: leader}, md)
}

// LeaderHint reports whether err is a standby head's refusal (ErrNotLeader),
// and the leader's address where the standby named it ("" otherwise): from
// a *NotLeaderError in this process, or the refusal's metadata when it
// came over the wire.
func LeaderHint(err error) (leader string, ok bool) {
	err = errgrpc.FromGRPC(err)
	if !errors.Is(err, ErrNotLeader) {
		return "", false
	}
	var nl *NotLeaderError
	if errors.As(err, &nl) {
		return nl.Leader, true
	}
	return errgrpc.Metadata(err)[leaderKey], true
}
