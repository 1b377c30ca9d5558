package head

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/trainer"
)

// The job half of the Head gRPC service: submit, watch, stop, list.

// errShuttingDown refuses jobs submitted to a head that is stopping.
var errShuttingDown = errors.New("the head is shutting down; submit the job again once it is back")

// headServer is the head's gRPC service: nodes from the cluster package,
// jobs from here.
type headServer struct {
	// A new RPC is a compile error until it is served.
	clusterpb.UnsafeHeadServer
	*Registry
	h *Daemon
}

var _ clusterpb.HeadServer = (*headServer)(nil)

func (s *headServer) Status(ctx context.Context, _ *clusterpb.StatusRequest) (*clusterpb.StatusReply, error) {
	return s.h.statusReply(ctx), nil
}

// The node half, served by the leader only: an agent that reaches a
// standby moves on to the next head it knows.

func (s *headServer) Register(ctx context.Context, req *clusterpb.RegisterRequest) (*clusterpb.RegisterReply, error) {
	if !s.h.Leading() {
		return nil, s.h.notLeader()
	}
	return s.Registry.Register(ctx, req)
}

func (s *headServer) Heartbeat(ctx context.Context, req *clusterpb.HeartbeatRequest) (*clusterpb.HeartbeatReply, error) {
	if !s.h.Leading() {
		return nil, s.h.notLeader()
	}
	return s.Registry.Heartbeat(ctx, req)
}

func (s *headServer) Drain(ctx context.Context, req *clusterpb.DrainRequest) (*clusterpb.DrainReply, error) {
	if !s.h.Leading() {
		return nil, s.h.notLeader()
	}
	return s.Registry.Drain(ctx, req)
}

// SubmitJob takes the job, then its working directory into a file of the
// head's uploads, refused before it is read when over the head's limit.
func (s *headServer) SubmitJob(stream grpc.ClientStreamingServer[clusterpb.SubmitJobRequest, clusterpb.SubmitJobReply]) error {
	if !s.h.Leading() {
		return s.h.notLeader()
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.GetJob()
	if req == nil {
		return status.Error(codes.InvalidArgument, "SubmitJob's first message must carry the job")
	}
	limit := s.h.cfg.MaxWorkingDir
	if limit == 0 {
		limit = DefaultMaxWorkingDir
	}
	wd, err := cluster.ReceiveWorkdir(s.h.uploads, req.Workdir, limit, func() ([]byte, error) {
		m, err := stream.Recv()
		return m.GetWorkdirChunk(), err
	})
	if err != nil {
		return err
	}
	hj, err := s.h.submit(req, wd)
	if err != nil {
		_ = os.Remove(wd.Path)
	}
	switch {
	case errors.Is(err, trainer.ErrInvalidConfig):
		return err // INVALID_CONFIG, by the server's errgrpc interceptor
	case errors.Is(err, errShuttingDown):
		return status.Error(codes.FailedPrecondition, err.Error())
	case err != nil:
		return status.Error(codes.Internal, err.Error())
	}
	return stream.SendAndClose(&clusterpb.SubmitJobReply{JobId: hj.id, Name: hj.name})
}

// DefaultMaxWorkingDir is the largest working directory a head takes when
// Config.MaxWorkingDir is 0.
const DefaultMaxWorkingDir = 1 << 30

// uploadsDir makes the directory a head keeps working directories in: in
// stateDir, or a new one.
func uploadsDir(stateDir string) (string, error) {
	if stateDir == "" {
		dir, err := os.MkdirTemp("", "rtrain-head-uploads-")
		if err != nil {
			return "", fmt.Errorf("trainer: %w", err)
		}
		return dir, nil
	}
	dir := filepath.Join(stateDir, "uploads")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("trainer: %w", err)
	}
	return dir, nil
}

func (s *headServer) WatchJob(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
	if !s.h.Leading() {
		return s.h.notLeader()
	}
	hj := s.h.find(req.Job)
	if hj == nil {
		return status.Errorf(codes.NotFound, "no job %q on this cluster; `rtrain jobs` lists them", req.Job)
	}
	hj.mu.Lock()
	next := hj.servedFrom(req.From, req.Epoch)
	hj.mu.Unlock()
	for {
		hj.mu.Lock()
		batch := hj.eventsFrom(next)
		changed := hj.changed
		ended := !hj.ended.IsZero()
		hj.mu.Unlock()
		for _, ev := range batch {
			if err := stream.Send(ev); err != nil {
				return err
			}
			next = ev.Index + 1
		}
		if ended || !req.Follow {
			return nil
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func (s *headServer) StopJob(_ context.Context, req *clusterpb.StopJobRequest) (*clusterpb.StopJobReply, error) {
	if !s.h.Leading() {
		return nil, s.h.notLeader()
	}
	hj := s.h.find(req.Job)
	if hj == nil {
		return nil, status.Errorf(codes.NotFound, "no job %q on this cluster; `rtrain jobs` lists them", req.Job)
	}
	hj.cancel()
	return &clusterpb.StopJobReply{State: string(hj.summaryState())}, nil
}

func (s *headServer) ListJobs(context.Context, *clusterpb.ListJobsRequest) (*clusterpb.ListJobsReply, error) {
	if !s.h.Leading() {
		return nil, s.h.notLeader()
	}
	return &clusterpb.ListJobsReply{Jobs: s.h.summaries()}, nil
}

// wireError is how a job's error travels to its client.
func wireError(err error) *clusterpb.JobError {
	if err == nil {
		return nil
	}
	we := &clusterpb.JobError{Kind: "other", Message: err.Error()}
	var jerr *trainer.JobError
	var cerr *trainer.CheckpointError
	switch {
	case errors.As(err, &jerr):
		we.Kind = "job"
		we.DetailJson, _ = json.Marshal(jerr)
	case errors.As(err, &cerr):
		we.Kind = "checkpoint"
		we.DetailJson, _ = json.Marshal(map[string]any{"index": cerr.Index, "error": cerr.Err.Error()})
	case errors.Is(err, trainer.ErrCancelled):
		we.Kind = "cancelled"
	case errors.Is(err, trainer.ErrInvalidConfig):
		we.Kind = "invalid"
	}
	return we
}

// pruneUploads removes what a head before this one left in dir but the
// jobs keep: of those, only the ones this head adopts run again.
func pruneUploads(dir string, keep map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	for _, e := range entries {
		if p := filepath.Join(dir, e.Name()); !keep[p] {
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("trainer: %w", err)
			}
		}
	}
	return nil
}
