package head

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster/clusterpb"
)

// RegisterWithoutJobs adds h to srv as the whole Head service, its job
// half answering Unimplemented: a head that runs no jobs, as the heartbeat
// benchmark and the node half's tests serve it. `rtrain start --head`
// serves the Daemon, which runs them.
func (h *Registry) RegisterWithoutJobs(srv grpc.ServiceRegistrar) {
	clusterpb.RegisterHeadServer(srv, withoutJobs{Registry: h})
}

// withoutJobs is a Registry with the job half refused. It embeds the
// Unsafe server, not the Unimplemented one: a new RPC is a compile error
// here until it is answered.
type withoutJobs struct {
	clusterpb.UnsafeHeadServer
	*Registry
}

var _ clusterpb.HeadServer = withoutJobs{}

var errNoJobs = status.Error(codes.Unimplemented, "this head runs no jobs")

func (withoutJobs) SubmitJob(grpc.ClientStreamingServer[clusterpb.SubmitJobRequest, clusterpb.SubmitJobReply]) error {
	return errNoJobs
}

func (withoutJobs) WatchJob(*clusterpb.WatchJobRequest, grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
	return errNoJobs
}

func (withoutJobs) StopJob(context.Context, *clusterpb.StopJobRequest) (*clusterpb.StopJobReply, error) {
	return nil, errNoJobs
}

func (withoutJobs) ListJobs(context.Context, *clusterpb.ListJobsRequest) (*clusterpb.ListJobsReply, error) {
	return nil, errNoJobs
}
