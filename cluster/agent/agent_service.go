package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/checkpoint/stage"
	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/internal/workdir"
	"github.com/rtrain/rtrain/rendezvous"
)

// PythonResolver finds the interpreter a job's workers run on this node:
// the one asked for, else one that can import torch. It returns its path
// and torch's version.
type PythonResolver func(ctx context.Context, asked, script string) (path, torchVersion string, err error)

// Service serves an Agent to the head over gRPC: it unpacks the job's
// working directory, finds python, stages checkpoints and keeps what each
// running group needs on this node under DataDir.
type Service struct {
	// A new RPC is a compile error until it is served.
	clusterpb.UnsafeAgentServer

	agent   *Agent
	dataDir string
	resolve PythonResolver
	log     *slog.Logger
	// headTimeout is how long the groups go on without a head (Config's).
	headTimeout time.Duration
	// stopped says why the agent stopped a group by itself; under mu.
	stopped map[RunningKey]string

	mu     sync.Mutex
	groups map[string]*agentJob
	wg     sync.WaitGroup // one per claimed group, until forgotten
}

type agentJob struct {
	// group and stager are set as the group starts; under mu.
	group  *Group
	stager *stage.Area
	// done is closed when the group has ended and its files are gone.
	done chan struct{}
	// attempt is the job's attempt the group runs.
	attempt int
	jobID   string
	journal *journal
}

// NewService serves agent, keeping job files under dataDir.
func NewService(agent *Agent, dataDir string, resolve PythonResolver, log *slog.Logger) *Service {
	return &Service{agent: agent, dataDir: dataDir, resolve: resolve, log: log, groups: map[string]*agentJob{}}
}

var _ clusterpb.AgentServer = (*Service)(nil)

// Register adds the service to a gRPC server.
func (s *Service) Register(srv *grpc.Server) { clusterpb.RegisterAgentServer(srv, s) }

func (s *Service) jobDir(jobID string) string { return filepath.Join(s.dataDir, "jobs", jobID) }

// StartGroup implements clusterpb.AgentServer: the group's spec, then the
// working directory's archive, unpacked as it arrives.
func (s *Service) StartGroup(stream grpc.BidiStreamingServer[clusterpb.StartGroupRequest, clusterpb.GroupEvent]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.GetGroup()
	if req == nil {
		return status.Error(codes.InvalidArgument, "StartGroup's first message must carry the group")
	}
	// The head held the working directory to its limit; the node holds the
	// archive to what its manifest says.
	if err := cluster.CheckManifest(req.Workdir, math.MaxInt64); err != nil {
		return err
	}
	var spec cluster.GroupSpec
	if err := json.Unmarshal(req.SpecJson, &spec); err != nil {
		return status.Errorf(codes.InvalidArgument, "group spec: %v", err)
	}
	if !validJobID(spec.JobID) {
		return status.Errorf(codes.InvalidArgument, "job id %q", spec.JobID)
	}
	// An earlier attempt's group of this job may still be stopping here
	// (the head gave up on this node and it came back): its files go
	// with it, so the new group waits for it before touching any.
	aj, err := s.claim(ctx, spec.JobID, spec.Layout.RestartCount)
	if err != nil {
		return err
	}
	// Until the group has started, this call owns what it claimed.
	owned := false
	defer func() {
		if !owned {
			s.forget(spec.JobID, aj)
		}
	}()
	// Each attempt gets its own copy of the working directory: workers
	// write into it, and one attempt's files must not turn up in the next.
	jd := s.jobDir(spec.JobID)
	dir := filepath.Join(jd, "workdir")
	if err := workdir.RemoveTree(dir); err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	archive := cluster.NewChunkReader(req.Workdir.ArchiveBytes, func() ([]byte, error) {
		m, err := stream.Recv()
		return m.GetWorkdirChunk(), err
	})
	if err := workdir.Unpack(ctx, archive, req.Workdir.Digest, dir, cluster.UnpackLimits(req.Workdir)); err != nil {
		return unpackStatus(err)
	}
	if _, err := archive.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		return status.Errorf(codes.InvalidArgument, "more after the working directory's archive (%v)", err)
	}
	spec.Dir = dir
	if spec.Module == "" {
		spec.Script = filepath.Join(dir, filepath.FromSlash(spec.Script))
	}
	py, torch, err := s.resolve(ctx, req.Python, spec.Script)
	if err != nil {
		// The head names the node in what it makes of the error.
		return status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	spec.Python = py
	spec.Layout.LegacyNCCLEnv = rendezvous.LegacyNCCL(torch)
	// The node's own environment, less the cluster token, then what the
	// job added.
	spec.Env = append(withoutToken(os.Environ()), spec.Env...)
	spec.LogDir = filepath.Join(jd, "logs")
	stager, err := stage.New(filepath.Join(jd, "staging"), spec.StagedInFlight)
	if err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	s.mu.Lock()
	aj.stager = stager
	s.mu.Unlock()
	spec.Stager = stager
	if spec.Restore != nil {
		spec.Restore.Dir = filepath.Join(jd, "restore")
	}

	// The group outlives this call: a head that restarts, or another that
	// takes over, follows it again through AttachGroup, and until then
	// its events wait in the journal.
	g, err := s.agent.Start(context.WithoutCancel(ctx), spec)
	if err != nil {
		if errors.Is(err, cluster.ErrNotIsolated) {
			return err // NOT_ISOLATED, by the server's errgrpc interceptor
		}
		return status.Errorf(codes.Internal, "%v", err)
	}
	s.mu.Lock()
	aj.group = g
	s.mu.Unlock()
	owned = true
	go s.run(aj, g, stager)
	return s.send(ctx, aj, 1, stream)
}

// run records the group's events until it ends, waits for the head to
// release what its workers staged, then forgets the group.
func (s *Service) run(aj *agentJob, g *Group, stager *stage.Area) {
	defer s.forget(g.spec.JobID, aj)
	failed := false
	for e := range g.Events() {
		if e.Kind == cluster.WorkerExited && !e.Exit.Success() && !e.CrashedInTeardown() {
			failed = true
		}
		aj.journal.append(e)
	}
	aj.journal.end()
	if failed {
		return
	}
	// The workers are done, but the head may still be committing what
	// they reported last: the staged files stay until it has released
	// them all, bounded, and longer while no head is there to.
	dctx, cancel := context.WithTimeout(context.Background(), stagedDrainTimeout+s.headTimeout)
	defer cancel()
	if err := stager.Drain(dctx); err != nil {
		s.log.Warn("staged checkpoints not released before the group's end", "job", g.spec.JobID, "err", err)
	}
}

// send streams the group's events from seq from until the last, or until
// the stream or ctx ends; the group goes on either way.
func (s *Service) send(ctx context.Context, aj *agentJob, from int64, stream grpc.ServerStreamingServer[clusterpb.GroupEvent]) error {
	for {
		batch, done, err := aj.journal.read(ctx, from)
		if err != nil {
			return err
		}
		if done {
			// The stream ends once the group's files are gone too, which
			// waits for the head to release what it staged.
			select {
			case <-aj.done:
			case <-ctx.Done():
			}
			return nil
		}
		for _, e := range batch {
			if err := stream.Send(&clusterpb.GroupEvent{EventJson: e.data, Seq: e.seq, StagedReleased: e.released}); err != nil {
				s.log.Info("group events not delivered; the group goes on, its events kept for the head", "job", aj.jobID, "err", err)
				return err
			}
			from = e.seq + 1
		}
	}
}

// AttachGroup implements clusterpb.AgentServer.
func (s *Service) AttachGroup(req *clusterpb.AttachGroupRequest, stream grpc.ServerStreamingServer[clusterpb.GroupEvent]) error {
	aj := s.job(req.JobId, int(req.Attempt))
	if aj == nil {
		s.mu.Lock()
		why := s.stopped[RunningKey{req.JobId, int(req.Attempt)}]
		s.mu.Unlock()
		if why != "" {
			return status.Errorf(codes.NotFound, "node %s stopped the workers: %s", s.agent.Node().ID, why)
		}
		return status.Errorf(codes.NotFound, "node %s no longer runs the workers", s.agent.Node().ID)
	}
	return s.send(stream.Context(), aj, req.From, stream)
}

// AckGroup implements clusterpb.AgentServer.
func (s *Service) AckGroup(_ context.Context, req *clusterpb.AckGroupRequest) (*clusterpb.AckGroupReply, error) {
	if aj := s.job(req.JobId, int(req.Attempt)); aj != nil {
		aj.journal.ack(req.Seq)
	}
	return &clusterpb.AckGroupReply{}, nil
}

// job is the job's group of attempt on this node once it has started, nil
// if there is none.
func (s *Service) job(jobID string, attempt int) *agentJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	if aj := s.groups[jobID]; aj != nil && aj.attempt == attempt && aj.group != nil {
		return aj
	}
	return nil
}

// Running names the groups that have started and not been forgotten.
func (s *Service) Running() []*clusterpb.RunningGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*clusterpb.RunningGroup
	for id, aj := range s.groups {
		if aj.group != nil {
			out = append(out, &clusterpb.RunningGroup{JobId: id, Attempt: int32(aj.attempt)})
		}
	}
	return out
}

// Keep stops every running group that keep does not name: the head that
// the node registered with no longer follows them.
func (s *Service) Keep(keep []*clusterpb.RunningGroup, why string) {
	kept := map[string]int{}
	for _, k := range keep {
		kept[k.JobId] = int(k.Attempt)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, aj := range s.groups {
		if a, ok := kept[id]; aj.group != nil && (!ok || a != aj.attempt) {
			s.log.Warn("stopping workers", "job", id, "attempt", aj.attempt, "why", why)
			aj.group.Stop()
			s.noteStopped(id, aj.attempt, why)
		}
	}
}

// stagedDrainTimeout bounds how long a finished group's staged checkpoints
// wait for the head to fetch them.
const stagedDrainTimeout = 2 * time.Minute

// unpackStatus is a failed unpack of a working directory as a gRPC status.
func unpackStatus(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return status.Errorf(st.Code(), "unpack the working directory: %s", st.Message())
	}
	code := codes.Internal
	if errors.Is(err, workdir.ErrOverLimit) || errors.Is(err, workdir.ErrDigestMismatch) || errors.Is(err, workdir.ErrUnsafe) {
		code = codes.InvalidArgument
	}
	return status.Errorf(code, "unpack the working directory: %v", err)
}

// claim makes aj the job's group on this node, once an earlier one has
// ended (bounded: a group stops within its grace period).
func (s *Service) claim(ctx context.Context, jobID string, attempt int) (*agentJob, error) {
	if err := s.waitGone(ctx, jobID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.groups[jobID]; dup {
		return nil, status.Errorf(codes.AlreadyExists, "job %s already starts a group on node %s", jobID, s.agent.Node().ID)
	}
	aj := &agentJob{done: make(chan struct{}), attempt: attempt, jobID: jobID, journal: newJournal()}
	s.groups[jobID] = aj
	s.wg.Add(1)
	return aj, nil
}

// waitGone waits until no group of job runs here.
func (s *Service) waitGone(ctx context.Context, jobID string) error {
	ctx, cancel := context.WithTimeout(ctx, groupGoneTimeout)
	defer cancel()
	for {
		s.mu.Lock()
		aj := s.groups[jobID]
		s.mu.Unlock()
		if aj == nil {
			return nil
		}
		select {
		case <-aj.done:
		case <-ctx.Done():
			return status.Errorf(codes.FailedPrecondition, "an earlier group of job %s is still stopping on node %s", jobID, s.agent.Node().ID)
		}
	}
}

// groupGoneTimeout bounds the wait for an earlier group of a job to end.
const groupGoneTimeout = time.Minute

// forget removes what a finished group kept on this node: its store,
// staged checkpoints, restored checkpoint and working directory. Its logs
// stay.
func (s *Service) forget(jobID string, aj *agentJob) {
	s.agent.closeStore(jobID)
	if aj.stager != nil {
		_ = aj.stager.Close()
	}
	jd := s.jobDir(jobID)
	for _, d := range []string{"staging", "restore", "workdir"} {
		if err := workdir.RemoveTree(filepath.Join(jd, d)); err != nil {
			s.log.Warn("job files left behind", "job", jobID, "err", err)
		}
	}
	s.mu.Lock()
	if s.groups[jobID] == aj {
		delete(s.groups, jobID)
	}
	s.mu.Unlock()
	close(aj.done)
	s.wg.Done()
}

// Wait waits until every group has ended and been cleaned up, or ctx ends.
func (s *Service) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// withoutToken is env less the cluster token: workers run the job's code
// and have no business calling the cluster.
func withoutToken(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, auth.TokenEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// stager is the running group's staging area.
func (s *Service) stager(jobID string) (*stage.Area, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	aj := s.groups[jobID]
	if aj == nil || aj.stager == nil {
		return nil, status.Errorf(codes.NotFound, "no group of job %s on node %s", jobID, s.agent.Node().ID)
	}
	return aj.stager, nil
}

// group is the running group of the job's attempt, nil before it started
// or when another attempt runs.
func (s *Service) group(jobID string, attempt int) *Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	if aj := s.groups[jobID]; aj != nil && aj.attempt == attempt {
		return aj.group
	}
	return nil
}

// StopGroup implements clusterpb.AgentServer.
func (s *Service) StopGroup(_ context.Context, req *clusterpb.StopGroupRequest) (*clusterpb.StopGroupReply, error) {
	if g := s.group(req.JobId, int(req.Attempt)); g != nil {
		g.Stop()
	}
	return &clusterpb.StopGroupReply{}, nil
}

// DumpStacks implements clusterpb.AgentServer.
func (s *Service) DumpStacks(_ context.Context, req *clusterpb.StopGroupRequest) (*clusterpb.StopGroupReply, error) {
	if g := s.group(req.JobId, int(req.Attempt)); g != nil {
		g.DumpStacks()
	}
	return &clusterpb.StopGroupReply{}, nil
}

// Rendezvous implements clusterpb.AgentServer.
func (s *Service) Rendezvous(ctx context.Context, req *clusterpb.RendezvousRequest) (*clusterpb.RendezvousReply, error) {
	if !validJobID(req.JobId) {
		return nil, status.Errorf(codes.InvalidArgument, "job id %q", req.JobId)
	}
	// The store is the job's: an earlier group's end would close it.
	if err := s.waitGone(ctx, req.JobId); err != nil {
		return nil, err
	}
	torch := req.TorchVersion
	if torch == "" {
		var err error
		if _, torch, err = s.resolve(ctx, req.Python, ""); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
		}
	}
	r, err := s.agent.hostRendezvous(ctx, req.JobId, torch)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	return &clusterpb.RendezvousReply{Port: int32(r.Port), AgentStore: r.AgentStore}, nil
}

// FetchStaged implements clusterpb.AgentServer: it sends every file staged
// for the report, or only those named.
func (s *Service) FetchStaged(req *clusterpb.FetchStagedRequest, stream grpc.ServerStreamingServer[clusterpb.FileChunk]) error {
	st, err := s.stager(req.JobId)
	if err != nil {
		return err
	}
	dir := st.Dir(int(req.Seq))
	var files []string
	if len(req.Files) > 0 {
		files = req.Files
	} else if files, err = cluster.ListFiles(dir); err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	for _, f := range files {
		if !cluster.LocalPath(f) {
			return status.Errorf(codes.InvalidArgument, "file %q is outside the report", f)
		}
		if err := cluster.SendFile(stream, filepath.Join(dir, filepath.FromSlash(f)), f); err != nil {
			return err
		}
	}
	if req.Release {
		s.release(req.JobId, int(req.Seq), st)
	}
	return nil
}

// release frees a report's staged files and notes it in the group's
// journal: a head that attaches later must not ask for them.
func (s *Service) release(jobID string, seq int, st *stage.Area) {
	_ = st.Release(seq)
	s.mu.Lock()
	aj := s.groups[jobID]
	s.mu.Unlock()
	if aj != nil {
		aj.journal.release(seq)
	}
}

// ReleaseStaged implements clusterpb.AgentServer.
func (s *Service) ReleaseStaged(_ context.Context, req *clusterpb.FetchStagedRequest) (*clusterpb.ReleaseStagedReply, error) {
	st, err := s.stager(req.JobId)
	if err != nil {
		return &clusterpb.ReleaseStagedReply{}, nil // the group ended and took its staging with it
	}
	s.release(req.JobId, int(req.Seq), st)
	return &clusterpb.ReleaseStagedReply{}, nil
}

// PutRestore implements clusterpb.AgentServer: the files of the checkpoint
// a job resumes from, before its group starts.
func (s *Service) PutRestore(stream grpc.ClientStreamingServer[clusterpb.FileChunk, clusterpb.PutRestoreReply]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if !validJobID(first.JobId) {
		return status.Errorf(codes.InvalidArgument, "job id %q", first.JobId)
	}
	// An earlier group's end removes restore/: let it end first.
	if err := s.waitGone(stream.Context(), first.JobId); err != nil {
		return err
	}
	dir := filepath.Join(s.jobDir(first.JobId), "restore")
	if err := workdir.RemoveTree(dir); err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	if err := cluster.ReceiveFiles(dir, first, stream.Recv); err != nil {
		return err
	}
	return stream.SendAndClose(&clusterpb.PutRestoreReply{})
}

func validJobID(id string) bool {
	return id != "" && !strings.ContainsAny(id, `/\.`) && len(id) <= 64
}

// StopAll stops every running group: the head is out of reach, has
// declared this node dead, and has failed these workers already; left
// running, they would train on with no one to hear them.
func (s *Service) StopAll(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, aj := range s.groups {
		if aj.group != nil {
			s.log.Warn("stopping workers", "job", id, "why", why)
			aj.group.Stop()
			s.noteStopped(id, aj.attempt, why)
		}
	}
}

// noteStopped keeps why the agent stopped a group by itself, for the head
// that asks for the group after it is gone; s.mu is held.
func (s *Service) noteStopped(jobID string, attempt int, why string) {
	if s.stopped == nil || len(s.stopped) >= maxStoppedNotes {
		s.stopped = map[RunningKey]string{}
	}
	s.stopped[RunningKey{jobID, attempt}] = why
}

// maxStoppedNotes bounds the reasons kept for stopped groups: a head asks
// for a group soon after it comes back, or never.
const maxStoppedNotes = 1024

// RunningKey names a group: its job and attempt.
type RunningKey struct {
	Job     string
	Attempt int
}
