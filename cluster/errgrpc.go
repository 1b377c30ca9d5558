package cluster

import (
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
}
