package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/internal/text"
)

// HeadConfig is a cluster head: `rtrain start --head`.
type HeadConfig struct {
	// Addr is the address to listen on ("" listens on every interface);
	// Port its port (0 picks one).
	Addr string
	Port int
	// Security holds the cluster token (required) and TLS files.
	Security cluster.Security
	// ResultsDir is where jobs' logs and, unless a job names other
	// storage, checkpoints are kept on the head. Empty: ~/rtrain_results.
	// A job's local --storage or --resume-from must lie inside it (a
	// relative one is taken from it) or inside AllowedStorageRoots; S3
	// storage is not confined.
	ResultsDir string
	// AllowedStorageRoots are more directories on the head, each with
	// everything under it, that a submitted job's local storage may name.
	// Empty: only ResultsDir.
	AllowedStorageRoots []string
	// StateDir keeps the head's job table (jobs.db), so a head that
	// restarts still lists every job: those that were running are marked
	// StateLost. Empty: jobs are kept in memory only. The working
	// directories of running jobs are kept in its uploads/; without it,
	// in a directory of their own under os.TempDir.
	StateDir string
	// MaxWorkingDir is the largest working directory the head takes from
	// a job, in bytes, as Config.WorkingDirLimit counts it: a larger one
	// is refused before it is sent. 0 means DefaultMaxWorkingDir (1 GiB).
	MaxWorkingDir int64
	// HeartbeatInterval and HeartbeatTimeout: zero takes the cluster
	// package's defaults (1 s and 5 s).
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
}

// Head is a running cluster head: the node registry, the scheduler and the
// jobs submitted to it, served over gRPC.
type Head struct {
	cfg   HeadConfig
	log   *slog.Logger
	nodes *cluster.HeadService
	srv   *grpc.Server
	ln    net.Listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	store *jobStore // nil without HeadConfig.StateDir
	// uploads holds the working directories of the jobs that run, each
	// removed when its job ends.
	uploads string

	// results and roots are HeadConfig.ResultsDir and
	// AllowedStorageRoots, absolute.
	results string
	roots   []string
	// endedGrace is how long an ended job keeps every log line it holds
	// (endedLogGrace).
	endedGrace time.Duration

	mu    sync.Mutex
	jobs  map[string]*headJob
	order []string
}

// StartHead starts serving; Close stops it and every job it runs.
func StartHead(ctx context.Context, cfg HeadConfig, log *slog.Logger) (*Head, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := cfg.Security.ServerOptions()
	if err != nil {
		return nil, err
	}
	if cfg.MaxWorkingDir < 0 {
		return nil, invalid("the head's working directory limit must be 0 (the default, %d) or more, got %d", DefaultMaxWorkingDir, cfg.MaxWorkingDir)
	}
	results, err := resultsDir(cfg.ResultsDir)
	if err != nil {
		return nil, err
	}
	roots := make([]string, 0, len(cfg.AllowedStorageRoots))
	for _, r := range cfg.AllowedStorageRoots {
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("trainer: allowed storage root %s: %w", r, err)
		}
		roots = append(roots, abs)
	}
	var store *jobStore
	var recovered []jobRecord
	if cfg.StateDir != "" {
		if store, err = openJobStore(cfg.StateDir); err != nil {
			return nil, err
		}
		if recovered, err = store.recover(time.Now()); err != nil {
			_ = store.close()
			return nil, fmt.Errorf("trainer: recover the job table: %w", err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(cfg.Addr, strconv.Itoa(cfg.Port)))
	if err != nil {
		if store != nil {
			_ = store.close()
		}
		return nil, fmt.Errorf("trainer: head listen: %w", err)
	}
	uploads, err := uploadsDir(cfg.StateDir)
	if err != nil {
		_ = ln.Close()
		if store != nil {
			_ = store.close()
		}
		return nil, err
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &Head{
		cfg: cfg, log: log, ln: ln, ctx: hctx, cancel: cancel, uploads: uploads,
		nodes: cluster.NewHeadService(cluster.NewHead(), cfg.Security, cluster.HeadOptions{
			HeartbeatInterval: cfg.HeartbeatInterval, HeartbeatTimeout: cfg.HeartbeatTimeout,
		}, log),
		jobs: map[string]*headJob{}, store: store,
		results: results, roots: roots, endedGrace: endedLogGrace,
	}
	for _, r := range recovered {
		h.jobs[r.ID] = restored(r)
		h.order = append(h.order, r.ID)
		if r.State == StateLost {
			log.Warn("job lost with the head's restart", "job", r.ID, "name", r.Name)
		}
	}
	h.forgetEnded()
	h.srv = grpc.NewServer(opts...)
	clusterpb.RegisterHeadServer(h.srv, &headServer{HeadService: h.nodes, h: h})
	h.wg.Go(func() { _ = h.srv.Serve(ln) })
	return h, nil
}

// Addr is where the head listens.
func (h *Head) Addr() net.Addr { return h.ln.Addr() }

// Nodes is the node registry, for embedding programs and tests.
func (h *Head) Nodes() *cluster.HeadService { return h.nodes }

// Close cancels every running job, waits for them to end, and stops
// serving.
func (h *Head) Close() {
	h.cancel()
	h.mu.Lock()
	jobs := make([]*headJob, 0, len(h.jobs))
	for _, j := range h.jobs {
		jobs = append(jobs, j)
	}
	h.mu.Unlock()
	for _, j := range jobs {
		<-j.done
	}
	h.srv.Stop()
	h.wg.Wait()
	h.nodes.Close()
	if h.store != nil {
		_ = h.store.close()
	}
	_ = os.RemoveAll(h.uploads)
}

// persist writes hj's record to the job table, if the head keeps one.
func (h *Head) persist(hj *headJob) {
	if h.store == nil {
		return
	}
	if err := h.store.put(hj.record()); err != nil {
		h.log.Warn("job table", "job", hj.id, "err", err)
	}
}

// headBackend is the head's cluster as a job sees it.
type headBackend struct{ nodes *cluster.HeadService }

func (b headBackend) Scheduler() *cluster.Head { return b.nodes.Scheduler() }
func (b headBackend) Joined() <-chan struct{}  { return b.nodes.Joined() }
func (b headBackend) Agent(id string) (cluster.NodeAgent, bool) {
	return b.nodes.Agent(id)
}

// remoteInput is what a job submitted to a head brings: its working
// directory and the script's path inside it.
type remoteInput struct {
	backend backend
	workdir cluster.Workdir
	script  string
}

// headJob is a job the head runs: its events, kept for whoever watches.
type headJob struct {
	id, name  string
	workers   int
	submitted time.Time
	cancel    context.CancelFunc
	done      chan struct{}
	// logDir holds the job's rank_<N>.log files on the head, every line.
	logDir string

	mu       sync.Mutex
	events   []*clusterpb.JobEvent
	changed  chan struct{} // closed and replaced on each event
	state    State
	message  string
	ended    time.Time
	restarts int
	// next is the index of the next event; events may have gaps where old
	// log lines were dropped, so an event's place is its Index.
	next int64
	// logBytes is what the log lines in events cost; dropped holds the
	// notice in events of the lines dropped, with their count.
	logBytes int
	dropped  map[*clusterpb.JobEvent]int
}

// What the head keeps of a job's log lines in memory, for `rtrain logs`,
// WatchJob and the dashboard; each rank's log file on the head keeps them
// all. Every other event stays: they are few, and they are the job's story.
const (
	// maxJobLogBytes bounds the lines of a running job: past it, the
	// oldest go until half of it is left, so a job that logs for weeks, or
	// prints megabytes of progress bars, costs the head at most this.
	maxJobLogBytes = 8 << 20
	// endedLogBytes is what an ended job keeps, its newest lines: its end,
	// where a traceback is, for the dashboard's log tail and `rtrain logs`.
	// A small job's whole output fits.
	endedLogBytes = 64 << 10
	// endedLogGrace is how long an ended job keeps all it held, so that a
	// watcher still sending them (`rtrain fit --address`, `rtrain logs
	// -f`) gets every line.
	endedLogGrace = time.Minute
	// maxEndedJobs bounds the ended jobs the head remembers: the newest
	// stay, for `rtrain jobs`, `rtrain logs` and the dashboard. The job
	// table (HeadConfig.StateDir) and the log files keep the others.
	maxEndedJobs = 1000
	// eventOverhead is about what an event costs the head beyond its
	// JSON: the message, its slot and the pointer to it.
	eventOverhead = 96
)

// isLog reports whether ev is a log line. Type is Event's first field, so
// its JSON starts with it; a line's text can never match.
func isLog(ev *clusterpb.JobEvent) bool {
	return bytes.HasPrefix(ev.EventJson, []byte(`{"Type":"log"`))
}

func logCost(ev *clusterpb.JobEvent) int { return len(ev.EventJson) + eventOverhead }

// eventsFrom is the events with Index >= from.
func (hj *headJob) eventsFrom(from int64) []*clusterpb.JobEvent {
	i := sort.Search(len(hj.events), func(i int) bool { return hj.events[i].Index >= from })
	return hj.events[i:]
}

func (hj *headJob) add(ev *clusterpb.JobEvent, state State, msg string) {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	ev.Index = hj.next
	hj.next++
	hj.events = append(hj.events, ev)
	if isLog(ev) {
		hj.logBytes += logCost(ev)
		if hj.logBytes > maxJobLogBytes {
			hj.trimLogs(maxJobLogBytes / 2)
		}
	}
	if ev.ResultJson != nil {
		// With the last event, in the same critical section: a watcher
		// that sees the job ended has its result in the batch.
		hj.ended = time.Now()
	}
	if state != "" {
		hj.state, hj.message = state, msg
	}
	close(hj.changed)
	hj.changed = make(chan struct{})
}

// trimLogs drops the oldest log lines until those left cost at most keep
// bytes. One notice, a warning that says how many lines went and where
// they all are, stands for all the job ever dropped, at the index of the
// last: a reader that had not read them all learns of it, one that had
// reads nothing twice; the events around them stay in order. It fills a
// new slice: a watcher may be sending from the old one, outside the lock.
// hj.mu is held.
func (hj *headJob) trimLogs(keep int) {
	cut, kept := 0, 0 // the log lines before cut go
	for i := len(hj.events) - 1; i >= 0; i-- {
		ev := hj.events[i]
		if !isLog(ev) {
			continue
		}
		if kept+logCost(ev) > keep {
			cut = i + 1
			break
		}
		kept += logCost(ev)
	}
	if cut == 0 {
		return
	}
	events := make([]*clusterpb.JobEvent, 0, len(hj.events)-cut+64)
	var last *clusterpb.JobEvent // the newest line dropped, or the notice
	n := 0
	for i, ev := range hj.events {
		switch {
		case i < cut && isLog(ev):
			last, n = ev, n+1
		case hj.dropped[ev] > 0:
			// The notice of an earlier trim: this one's stands for its
			// lines too.
			last, n = ev, n+hj.dropped[ev]
		default:
			events = append(events, ev)
		}
	}
	note := hj.notice(last, n)
	at := sort.Search(len(events), func(i int) bool { return events[i].Index > note.Index })
	hj.events = slices.Insert(events, at, note)
	hj.dropped, hj.logBytes = map[*clusterpb.JobEvent]int{note: n}, kept
}

// notice stands for n log lines dropped from memory, the last of them last.
func (hj *headJob) notice(last *clusterpb.JobEvent, n int) *clusterpb.JobEvent {
	var at struct{ Time time.Time }
	_ = json.Unmarshal(last.EventJson, &at)
	are := "are"
	if n == 1 {
		are = "is"
	}
	b, _ := json.Marshal(Event{Type: EventWarning, Time: at.Time,
		Message: fmt.Sprintf("%s of this job's output %s no longer in the head's memory; every line is in %s on the head",
			text.Plural(n, "log line"), are, filepath.Join(hj.logDir, "rank_*.log"))})
	return &clusterpb.JobEvent{Index: last.Index, EventJson: b}
}

// release drops what an ended job holds of its output, but its last lines.
func (hj *headJob) release() {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	hj.trimLogs(endedLogBytes)
}

// jobEnded, once hj's last event is out, releases hj's output after the
// grace period (or as the head stops), and forgets the oldest ended jobs.
func (h *Head) jobEnded(hj *headJob) {
	h.forgetEnded()
	h.wg.Go(func() {
		t := time.NewTimer(h.endedGrace)
		defer t.Stop()
		select {
		case <-t.C:
			hj.release()
		case <-h.ctx.Done():
		}
	})
}

// forgetEnded forgets all but the newest maxEndedJobs ended jobs.
func (h *Head) forgetEnded() {
	h.mu.Lock()
	defer h.mu.Unlock()
	ended := 0
	keep := make([]bool, len(h.order))
	for i := len(h.order) - 1; i >= 0; i-- {
		keep[i] = true
		if h.jobs[h.order[i]].summaryState().Done() {
			ended++
			keep[i] = ended <= maxEndedJobs
		}
	}
	if ended <= maxEndedJobs {
		return
	}
	order := make([]string, 0, len(h.order)-(ended-maxEndedJobs))
	for i, id := range h.order {
		if keep[i] {
			order = append(order, id)
		} else {
			delete(h.jobs, id)
		}
	}
	h.order = order
}

func (hj *headJob) summary() *clusterpb.JobSummary {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	s := &clusterpb.JobSummary{Id: hj.id, Name: hj.name, State: string(hj.state), Message: hj.message,
		Workers: int32(hj.workers), SubmittedUnixMs: hj.submitted.UnixMilli(), Attempts: int32(hj.restarts + 1)}
	if !hj.ended.IsZero() {
		s.EndedUnixMs = hj.ended.UnixMilli()
	}
	return s
}

// submit starts a job sent by a client.
func (h *Head) submit(req *clusterpb.SubmitJobHeader, wd cluster.Workdir) (*headJob, error) {
	var cfg Config
	if err := json.Unmarshal(req.ConfigJson, &cfg); err != nil {
		return nil, invalid("job config: %v", err)
	}
	if err := cfg.validateFields(); err != nil {
		return nil, err
	}
	if !filepath.IsLocal(req.Script) {
		return nil, invalid("script %q must be a path inside the working directory", req.Script)
	}
	if err := h.confine(&cfg); err != nil {
		return nil, err
	}
	cfg.ResultsDir = h.results
	cfg.WorkingDir = ""
	t := &Trainer{cfg: cfg, log: h.log}
	j, err := t.newJob()
	if err != nil {
		return nil, err
	}
	j.script = req.Script
	j.remote = &remoteInput{backend: headBackend{h.nodes}, workdir: wd, script: req.Script}
	h.mu.Lock()
	if h.ctx.Err() != nil {
		h.mu.Unlock()
		return nil, errShuttingDown
	}
	for _, other := range h.jobs {
		if other.name == j.res.Name && !other.summaryState().Done() {
			h.mu.Unlock()
			return nil, invalid("run %s is already running on this cluster (job %s)", j.res.Name, other.id)
		}
	}
	ctx, cancel := context.WithCancel(h.ctx)
	hj := &headJob{id: j.id, name: j.res.Name, workers: cfg.Workers, submitted: time.Now(), logDir: j.res.LogDir,
		cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}), state: StatePending}
	h.jobs[hj.id] = hj
	h.order = append(h.order, hj.id)
	h.mu.Unlock()
	h.persist(hj)

	logs := newLogFiles(j.res.LogDir)
	j.cfg.OnEvent = func(e Event) {
		logs.write(e)
		b, _ := json.Marshal(e)
		var st State
		msg := ""
		if e.Type == EventState {
			st, msg = e.State, e.Message
		}
		if e.Type == EventRestart {
			hj.mu.Lock()
			hj.restarts++
			hj.mu.Unlock()
		}
		if e.Type == EventState && e.State.Done() {
			return // the last event goes out with the result, below
		}
		hj.add(&clusterpb.JobEvent{EventJson: b}, st, msg)
		if e.Type == EventState {
			h.persist(hj)
		}
	}
	h.wg.Go(func() {
		defer close(hj.done)
		defer cancel()
		res, err := j.run(ctx)
		// Before the job is seen to end: its working directory is gone then.
		_ = os.Remove(wd.Path)
		logs.close()
		final := Event{Type: EventState, Time: time.Now(), State: res.State}
		if err != nil {
			final.Message = err.Error()
		}
		b, _ := json.Marshal(final)
		rb, _ := json.Marshal(res)
		ev := &clusterpb.JobEvent{EventJson: b, ResultJson: rb, Error: wireError(err)}
		hj.add(ev, res.State, final.Message)
		h.persist(hj)
		h.log.Info("job ended", "job", hj.id, "name", hj.name, "state", res.State, "err", err)
		h.jobEnded(hj)
	})
	h.log.Info("job submitted", "job", hj.id, "name", hj.name, "workers", cfg.Workers)
	return hj, nil
}

// confine puts a job's local storage and checkpoint to resume from, which
// its client names, on the head's disk where the head allows.
func (h *Head) confine(cfg *Config) error {
	var err error
	if cfg.Storage != "" {
		if cfg.Storage, err = confineLocal("--storage", cfg.Storage, h.results, h.roots); err != nil {
			return err
		}
	}
	if cfg.ResumeFrom != "" {
		if cfg.ResumeFrom, err = confineLocal("--resume-from", cfg.ResumeFrom, h.results, h.roots); err != nil {
			return err
		}
	}
	return nil
}

func (hj *headJob) summaryState() State {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	return hj.state
}

// find is a job by id or run name, the newest of that name.
func (h *Head) find(key string) *headJob {
	h.mu.Lock()
	defer h.mu.Unlock()
	if j := h.jobs[key]; j != nil {
		return j
	}
	for i := len(h.order) - 1; i >= 0; i-- {
		if j := h.jobs[h.order[i]]; j.name == key {
			return j
		}
	}
	return nil
}

func (h *Head) summaries() []*clusterpb.JobSummary {
	h.mu.Lock()
	jobs := make([]*headJob, 0, len(h.order))
	for _, id := range h.order {
		jobs = append(jobs, h.jobs[id])
	}
	h.mu.Unlock()
	pending := map[string]string{}
	for _, p := range h.nodes.Scheduler().Pending() {
		pending[p.Job] = "waiting for resources: " + p.Reason
	}
	out := make([]*clusterpb.JobSummary, 0, len(jobs))
	for _, j := range jobs {
		s := j.summary()
		if why, ok := pending[j.id]; ok {
			s.Message = why
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].SubmittedUnixMs < out[b].SubmittedUnixMs })
	return out
}

// errShuttingDown refuses jobs submitted to a head that is stopping.
var errShuttingDown = errors.New("the head is shutting down; submit the job again once it is back")

// headServer is the head's gRPC service: nodes from the cluster package,
// jobs from here.
type headServer struct {
	*cluster.HeadService
	h *Head
}

func (s *headServer) Status(context.Context, *clusterpb.StatusRequest) (*clusterpb.StatusReply, error) {
	return s.h.Status(), nil
}

// SubmitJob takes the job, then its working directory into a file of the
// head's uploads, refused before it is read when over the head's limit.
func (s *headServer) SubmitJob(stream grpc.ClientStreamingServer[clusterpb.SubmitJobRequest, clusterpb.SubmitJobReply]) error {
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
	case errors.Is(err, ErrInvalidConfig):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errShuttingDown):
		return status.Error(codes.FailedPrecondition, err.Error())
	case err != nil:
		return status.Error(codes.Internal, err.Error())
	}
	return stream.SendAndClose(&clusterpb.SubmitJobReply{JobId: hj.id, Name: hj.name})
}

// DefaultMaxWorkingDir is the largest working directory a head takes when
// HeadConfig.MaxWorkingDir is 0.
const DefaultMaxWorkingDir = 1 << 30

// uploadsDir makes the directory a head keeps working directories in: in
// stateDir, emptied of what a head before this one left, or a new one.
func uploadsDir(stateDir string) (string, error) {
	if stateDir == "" {
		dir, err := os.MkdirTemp("", "rtrain-head-uploads-")
		if err != nil {
			return "", fmt.Errorf("trainer: %w", err)
		}
		return dir, nil
	}
	// The jobs of a head that stopped do not run again: their working
	// directories are of no use.
	dir := filepath.Join(stateDir, "uploads")
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("trainer: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("trainer: %w", err)
	}
	return dir, nil
}

func (s *headServer) WatchJob(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
	hj := s.h.find(req.Job)
	if hj == nil {
		return status.Errorf(codes.NotFound, "no job %q on this cluster; `rtrain jobs` lists them", req.Job)
	}
	next := max(req.From, 0)
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
	hj := s.h.find(req.Job)
	if hj == nil {
		return nil, status.Errorf(codes.NotFound, "no job %q on this cluster; `rtrain jobs` lists them", req.Job)
	}
	hj.cancel()
	return &clusterpb.StopJobReply{State: string(hj.summaryState())}, nil
}

func (s *headServer) ListJobs(context.Context, *clusterpb.ListJobsRequest) (*clusterpb.ListJobsReply, error) {
	return &clusterpb.ListJobsReply{Jobs: s.h.summaries()}, nil
}

// wireError is how a job's error travels to its client.
func wireError(err error) *clusterpb.JobError {
	if err == nil {
		return nil
	}
	we := &clusterpb.JobError{Kind: "other", Message: err.Error()}
	var jerr *JobError
	var cerr *CheckpointError
	switch {
	case errors.As(err, &jerr):
		we.Kind = "job"
		we.DetailJson, _ = json.Marshal(jerr)
	case errors.As(err, &cerr):
		we.Kind = "checkpoint"
		we.DetailJson, _ = json.Marshal(map[string]any{"index": cerr.Index, "error": cerr.Err.Error()})
	case errors.Is(err, ErrCancelled):
		we.Kind = "cancelled"
	case errors.Is(err, ErrInvalidConfig):
		we.Kind = "invalid"
	}
	return we
}

// logFiles writes each rank's lines on the head as they arrive, so the
// head keeps every node's logs in one place.
type logFiles struct {
	dir   string
	files map[int]*os.File
}

func newLogFiles(dir string) *logFiles { return &logFiles{dir: dir, files: map[int]*os.File{}} }

func (l *logFiles) write(e Event) {
	if e.Type != EventLog {
		return
	}
	f := l.files[e.Rank]
	if f == nil {
		if err := os.MkdirAll(l.dir, 0o755); err != nil {
			return
		}
		var err error
		if f, err = os.OpenFile(filepath.Join(l.dir, fmt.Sprintf("rank_%d.log", e.Rank)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return
		}
		l.files[e.Rank] = f
	}
	_, _ = f.WriteString(e.Line + "\n")
}

func (l *logFiles) close() {
	for _, f := range l.files {
		_ = f.Close()
	}
}

// Status is the cluster as `rtrain status` shows it: nodes and jobs.
func (h *Head) Status() *clusterpb.StatusReply {
	rep := h.nodes.StatusReply()
	rep.Jobs = h.summaries()
	return rep
}

// JobEvents returns at most limit (0: all) of job's events from index from
// on, the index to ask from next time, and a channel closed at the job's
// next event; ok is false for an unknown job (an id or a run name). The
// head keeps a bounded part of a job's output in memory (maxJobLogBytes,
// and less once it has ended: endedLogBytes): the indices skip the lines
// it dropped, and a warning in their place says where the log files are.
// res is the job's result, with its last event.
func (h *Head) JobEvents(job string, from, limit int) (events []Event, next int, res *Result, changed <-chan struct{}, ok bool) {
	hj := h.find(job)
	if hj == nil {
		return nil, from, nil, nil, false
	}
	hj.mu.Lock()
	batch := hj.eventsFrom(int64(max(from, 0)))
	if limit > 0 && len(batch) > limit {
		batch = batch[:limit]
	}
	changed = hj.changed
	next = max(from, int(hj.next))
	if len(batch) > 0 {
		next = int(batch[len(batch)-1].Index) + 1
	}
	hj.mu.Unlock()
	for _, ev := range batch {
		var e Event
		if json.Unmarshal(ev.EventJson, &e) == nil {
			events = append(events, e)
		}
		if ev.ResultJson != nil {
			res = &Result{}
			_ = json.Unmarshal(ev.ResultJson, res)
		}
	}
	return events, next, res, changed, true
}
