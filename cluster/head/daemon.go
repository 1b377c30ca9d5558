package head

import (
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
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/etcdstore"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/trainer"
)

// Config is a cluster head: `rtrain start --head`.
type Config struct {
	// Addr is the address to listen on ("" listens on every interface);
	// Port its port (0 picks one).
	Addr string
	Port int
	// Security holds the cluster token (required) and TLS files.
	Security auth.Security
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
	// Store, when set, is etcd://HOST:PORT[,HOST:PORT...][/PREFIX]: the job
	// table is kept in etcd, and of the heads with the same Store one
	// leads, elected through etcd, while the others stand by to take
	// over. Empty: the job table is in StateDir, and this head is alone.
	Store string
	// HeadID names this head among those of Store (default Advertise);
	// Advertise is the address clients and agents reach it at (default
	// the listener's).
	HeadID    string
	Advertise string
	// AdoptWait is how long a head that starts again waits for the nodes
	// of the jobs it adopts (those that were running, with StateDir) to
	// register again: 0 means DefaultAdoptWait.
	AdoptWait time.Duration
}

// Daemon is a running cluster head: the node registry, the scheduler and the
// jobs submitted to it, served over gRPC.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	nodes *Registry
	srv   *grpc.Server
	ln    net.Listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// table keeps the job records: nil without Config.StateDir or Store,
	// and on a standby until it leads; under mu.
	table jobTable
	// es is the etcd store of a head with standbys (Config.Store);
	// leadership is set once it leads, under mu.
	es         *etcdstore.Store
	leadership *etcdstore.Leadership
	// leading is set while this head is the active one; deposed once it
	// has stopped acting (lost its leadership), for good.
	leading, deposed atomic.Bool
	lost             chan error
	// uploads holds the working directories of the jobs that run, each
	// removed when its job ends.
	uploads string

	// results and roots are Config.ResultsDir and
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

// Start starts serving; Close stops it and every job it runs.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Daemon, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := cfg.Security.ServerOptions()
	if err != nil {
		return nil, err
	}
	if cfg.MaxWorkingDir < 0 {
		return nil, trainer.Invalid("the head's working directory limit must be 0 (the default, %d) or more, got %d", DefaultMaxWorkingDir, cfg.MaxWorkingDir)
	}
	results, err := trainer.ResultsDir(cfg.ResultsDir)
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
	var bolt *jobStore
	var es *etcdstore.Store
	var recovered []jobRecord
	switch {
	case cfg.Store != "":
		ecfg, err := etcdstore.ParseURL(cfg.Store)
		if err != nil {
			return nil, trainer.Invalid("--store: %v", err)
		}
		if es, err = etcdstore.Open(ctx, ecfg, log); err != nil {
			return nil, fmt.Errorf("trainer: the head's store %s: %w", cfg.Store, err)
		}
	case cfg.StateDir != "":
		if bolt, err = openJobStore(cfg.StateDir); err != nil {
			return nil, err
		}
		if recovered, err = bolt.recover(time.Now()); err != nil {
			_ = bolt.close()
			return nil, fmt.Errorf("trainer: recover the job table: %w", err)
		}
	}
	closeStores := func() {
		if bolt != nil {
			_ = bolt.close()
		}
		if es != nil {
			_ = es.Close()
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(cfg.Addr, strconv.Itoa(cfg.Port)))
	if err != nil {
		closeStores()
		return nil, fmt.Errorf("trainer: head listen: %w", err)
	}
	uploads, err := uploadsDir(cfg.StateDir)
	if err != nil {
		_ = ln.Close()
		closeStores()
		return nil, err
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &Daemon{
		cfg: cfg, log: log, ln: ln, ctx: hctx, cancel: cancel, uploads: uploads,
		nodes: NewRegistry(sched.New(), cfg.Security, Options{
			HeartbeatInterval: cfg.HeartbeatInterval, HeartbeatTimeout: cfg.HeartbeatTimeout,
		}, log),
		jobs: map[string]*headJob{}, es: es, lost: make(chan error, 1),
		results: results, roots: roots, endedGrace: endedLogGrace,
	}
	if bolt != nil {
		h.table = bolt
	}
	h.nodes.Keep = h.keep
	h.srv = grpc.NewServer(opts...)
	clusterpb.RegisterHeadServer(h.srv, &headServer{Registry: h.nodes, h: h})
	if es == nil {
		if err := h.lead(recovered); err != nil {
			h.Close()
			return nil, err
		}
		h.wg.Go(func() { _ = h.srv.Serve(ln) })
		return h, nil
	}
	// A standby serves at once: it answers who leads, and takes over
	// when the leader's lease ends.
	h.wg.Go(func() { _ = h.srv.Serve(ln) })
	h.wg.Go(h.campaign)
	return h, nil
}

// lead makes this head the active one, with the job table's records: it
// lists the jobs, and adopts those that were running.
func (h *Daemon) lead(recovered []jobRecord) error {
	keep := map[string]bool{}
	for _, r := range recovered {
		if r.Adoption != nil && r.Workdir != nil && !r.State.Done() {
			keep[r.Workdir.Path] = true
		}
	}
	if err := pruneUploads(h.uploads, keep); err != nil {
		return err
	}
	var adoptable []jobRecord
	h.mu.Lock()
	for _, r := range recovered {
		if !r.State.Done() && r.State != trainer.StateLost && r.Adoption != nil {
			h.jobs[r.ID] = adoptedJob(r)
			adoptable = append(adoptable, r)
		} else {
			h.jobs[r.ID] = restored(r)
		}
		h.order = append(h.order, r.ID)
		if r.State == trainer.StateLost {
			h.log.Warn("job lost with the head's restart", "job", r.ID, "name", r.Name)
		}
	}
	h.mu.Unlock()
	h.forgetEnded()
	h.leading.Store(true)
	h.adopt(adoptable)
	return nil
}

// campaign waits to lead, then leads until the leadership is lost: the
// head then stops acting at once (Lost), so that only the new leader runs
// jobs, and the process that embeds it should exit.
func (h *Daemon) campaign() {
	addr := h.cfg.Advertise
	if addr == "" {
		addr = h.Addr().String()
	}
	id := h.cfg.HeadID
	if id == "" {
		id = addr
	}
	h.log.Info("standby head: campaigning to lead", "id", id, "store", h.cfg.Store)
	l, err := h.es.Campaign(h.ctx, id, addr)
	if err != nil {
		if h.ctx.Err() == nil {
			h.lose(fmt.Errorf("trainer: campaign to lead: %w", err))
		}
		return
	}
	h.mu.Lock()
	h.leadership = l
	h.mu.Unlock()
	t := &etcdTable{lead: l, ctx: h.ctx}
	recs, err := loadEtcdJobs(h.ctx, h.es, t, time.Now())
	if err != nil {
		h.lose(fmt.Errorf("trainer: read the job table from %s: %w", h.cfg.Store, err))
		return
	}
	h.mu.Lock()
	h.table = t
	h.mu.Unlock()
	h.log.Info("leading the cluster", "id", id, "term", l.Term(), "jobs", len(recs))
	if err := h.lead(recs); err != nil {
		h.lose(err)
		return
	}
	select {
	case <-l.Lost():
		if h.deposed.Load() {
			return // HandOff resigned: nothing was lost
		}
		h.lose(fmt.Errorf("trainer: this head lost the leadership (%s); another head leads", l.Why()))
	case <-h.ctx.Done():
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = l.Resign(rctx)
		cancel()
	}
}

// lose stops the head acting as the leader, at once, and says why on Lost.
func (h *Daemon) lose(err error) {
	h.leading.Store(false)
	if !h.deposed.Swap(true) {
		// No call of this head's reaches an agent any more: the workers
		// are the new leader's now, and a job of this head that ends
		// must not stop them.
		h.wg.Go(h.nodes.Close)
	}
	h.log.Error("head stops acting", "err", err)
	select {
	case h.lost <- err:
	default:
	}
}

// Lost delivers why a head with standbys stopped acting as the leader (it
// lost its lease, or could not campaign): its process should exit, and a
// new one start as a standby.
func (h *Daemon) Lost() <-chan error { return h.lost }

// Leading reports whether this head is the active one.
func (h *Daemon) Leading() bool { return h.leading.Load() }

// notLeader is a standby's answer to a call only the leader serves.
func (h *Daemon) notLeader() error {
	addr := ""
	if h.es != nil {
		ctx, cancel := context.WithTimeout(h.ctx, 2*time.Second)
		_, addr, _ = h.es.Leader(ctx)
		cancel()
	}
	return cluster.NotLeader(addr)
}

// Addr is where the head listens.
func (h *Daemon) Addr() net.Addr { return h.ln.Addr() }

// Nodes is the node registry, for embedding programs and tests.
func (h *Daemon) Nodes() *Registry { return h.nodes }

// Close cancels every running job, waits for them to end, and stops
// serving.
func (h *Daemon) Close() {
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
	h.mu.Lock()
	table := h.table
	h.mu.Unlock()
	if table != nil {
		_ = table.close()
	}
	if h.es != nil {
		_ = h.es.Close()
	}
	_ = os.RemoveAll(h.uploads)
}

// HandOff ends the head without ending its jobs: it writes their records
// as they stand, stops acting at once (its agent connections close, as a
// deposed head's do), gives up its leadership so that a standby leads
// without waiting out the lease, and stops serving. A head stopped
// gracefully is far more often restarted or upgraded than gone for good:
// its workers carry on as through a crash, a standby or the same head
// started again adopts them, and their agents stop them past the head
// timeout if none does. Call it instead of Close, which ends the jobs.
func (h *Daemon) HandOff(ctx context.Context) {
	h.mu.Lock()
	jobs := make([]*headJob, 0, len(h.jobs))
	for _, hj := range h.jobs {
		jobs = append(jobs, hj)
	}
	l, table := h.leadership, h.table
	h.mu.Unlock()
	running := 0
	for _, hj := range jobs {
		select {
		case <-hj.done:
		default:
			h.persist(hj)
			running++
		}
	}
	h.leading.Store(false)
	if !h.deposed.Swap(true) {
		h.nodes.Close()
	}
	if l != nil {
		if err := l.Resign(ctx); err != nil {
			h.log.Warn("give up the leadership", "err", err)
		}
	}
	h.log.Info("head handed off: its jobs' workers go on for the next head to adopt", "running", running)
	h.srv.Stop()
	if table != nil {
		_ = table.close()
	}
	if h.es != nil {
		_ = h.es.Close()
	}
}

// persist writes hj's record to the job table, if the head keeps one.
func (h *Daemon) persist(hj *headJob) {
	h.mu.Lock()
	table := h.table
	h.mu.Unlock()
	if table == nil || h.deposed.Load() {
		return
	}
	hj.mu.Lock()
	hj.persisted = time.Now()
	hj.mu.Unlock()
	err := table.put(hj.record())
	if errors.Is(err, etcdstore.ErrNotLeader) {
		h.lose(fmt.Errorf("trainer: this head lost the leadership: %w", err))
		return
	}
	if err != nil {
		h.log.Warn("job table", "job", hj.id, "err", err)
	}
}

// headBackend is the head's cluster as a job sees it.
type headBackend struct{ nodes *Registry }

func (b headBackend) Scheduler() *sched.Scheduler { return b.nodes.Scheduler() }
func (b headBackend) Joined() <-chan struct{}     { return b.nodes.Joined() }
func (b headBackend) Agent(id string) (cluster.NodeAgent, bool) {
	return b.nodes.Agent(id)
}

// submit starts a job sent by a client.
func (h *Daemon) submit(req *clusterpb.SubmitJobHeader, wd cluster.Workdir) (*headJob, error) {
	var cfg trainer.Config
	if err := json.Unmarshal(req.ConfigJson, &cfg); err != nil {
		return nil, trainer.Invalid("job config: %v", err)
	}
	if err := h.confine(&cfg); err != nil {
		return nil, err
	}
	rj, err := trainer.NewRemoteJob(cfg, req.Script, wd, h.results, headBackend{h.nodes}, h.log)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.ctx.Err() != nil {
		h.mu.Unlock()
		return nil, errShuttingDown
	}
	for _, other := range h.jobs {
		if other.name == rj.Name() && !other.summaryState().Done() {
			h.mu.Unlock()
			return nil, trainer.Invalid("run %s is already running on this cluster (job %s)", rj.Name(), other.id)
		}
	}
	hj := &headJob{id: rj.ID(), name: rj.Name(), group: cfg.Group, params: cfg.Params, workers: cfg.Workers, submitted: time.Now(), logDir: rj.LogDir(),
		done: make(chan struct{}), changed: make(chan struct{}), state: trainer.StatePending,
		best: trainer.BestTracker{Metric: cfg.Metric, Mode: cfg.Mode}, workdir: &wd}
	h.jobs[hj.id] = hj
	h.order = append(h.order, hj.id)
	h.mu.Unlock()
	h.persist(hj)
	h.run(hj, rj, wd)
	h.log.Info("job submitted", "job", hj.id, "name", hj.name, "workers", cfg.Workers)
	return hj, nil
}

// run runs the job in a goroutine the head owns, keeping its events, its
// record and what another head would need to adopt it.
func (h *Daemon) run(hj *headJob, rj *trainer.RemoteJob, wd cluster.Workdir) {
	ctx, cancel := context.WithCancel(h.ctx)
	hj.cancel = cancel
	logs := newLogFiles(rj.LogDir())
	rj.OnAdoption(func(a trainer.Adoption) {
		b, err := json.Marshal(a)
		if err != nil {
			h.log.Warn("job adoption record", "job", hj.id, "err", err)
			return
		}
		hj.mu.Lock()
		hj.adoption, hj.attempt, hj.nodes, hj.seqs = b, a.Attempt, a.Plan.Nodes(), map[string]int64{}
		hj.mu.Unlock()
		h.persist(hj)
	})
	onEvent := func(e trainer.Event) {
		logs.write(e)
		var st trainer.State
		msg := ""
		if e.Type == trainer.EventState {
			st, msg = e.State, e.Message
		}
		if e.Type == trainer.EventReport && e.Rank == 0 {
			hj.reported(e)
		}
		if e.Type == trainer.EventRestart {
			h.restarted(hj)
		}
		if e.Type == trainer.EventState && e.State.Done() {
			return // the last event goes out with the result, below
		}
		due := hj.addFrom(e.Node, jobEvent(e), st, msg)
		// An event of the head's own is kept at once (they are few): a
		// head that adopts the job numbers from where the table had got,
		// and a client tells the events it had again from there only by
		// their group seq, which the head's own have not.
		if e.GroupSeq == 0 || e.Type == trainer.EventCheckpoint || due {
			h.persist(hj)
		}
	}
	h.wg.Go(func() {
		defer close(hj.done)
		defer cancel()
		res, err := rj.Run(ctx, onEvent)
		// Before the job is seen to end: its working directory is gone then.
		_ = os.Remove(wd.Path)
		logs.close()
		final := trainer.Event{Type: trainer.EventState, Time: time.Now(), State: res.State}
		if err != nil {
			final.Message = err.Error()
		}
		ev := jobEvent(final)
		ev.ResultJson, _ = json.Marshal(res)
		ev.Error = wireError(err)
		hj.add(ev, res.State, final.Message)
		hj.mu.Lock()
		hj.adopting = false
		hj.mu.Unlock()
		h.persist(hj)
		h.log.Info("job ended", "job", hj.id, "name", hj.name, "state", res.State, "err", err)
		h.jobEnded(hj)
	})
}

// persistEvery bounds how long the job table lags behind the group events
// a job passed on: a head that adopts the job passes on at most that much
// again.
const persistEvery = time.Second

// restarted counts a restart of hj. An adopted attempt that ended may have
// left groups the head never attached to (a node that came back late):
// they are stopped, as no head follows them.
func (h *Daemon) restarted(hj *headJob) {
	hj.mu.Lock()
	hj.restarts++
	adopting, attempt, nodes := hj.adopting, hj.attempt, hj.nodes
	hj.adopting = false
	hj.mu.Unlock()
	if !adopting {
		return
	}
	for _, id := range nodes {
		if a, ok := h.nodes.Agent(id); ok {
			if ra, ok := a.(*RemoteAgent); ok {
				ra.stopStale(hj.id, attempt)
			}
		}
	}
}

// adopt goes on running the jobs an earlier head process left running.
func (h *Daemon) adopt(recs []jobRecord) {
	for _, r := range recs {
		var a trainer.Adoption
		h.mu.Lock()
		hj := h.jobs[r.ID]
		h.mu.Unlock()
		if err := json.Unmarshal(r.Adoption, &a); err != nil || r.Workdir == nil {
			h.log.Warn("job cannot be adopted", "job", r.ID, "err", err)
			continue
		}
		rj, err := trainer.AdoptRemoteJob(a, *r.Workdir, h.results, headBackend{h.nodes}, r.Seqs, h.adoptWait(), h.log)
		if err != nil {
			h.log.Warn("job cannot be adopted", "job", r.ID, "err", err)
			continue
		}
		hj.logDir = rj.LogDir()
		h.log.Info("adopting a job the earlier head ran", "job", r.ID, "name", r.Name, "attempt", a.Attempt, "nodes", len(a.Plan.Nodes()))
		// Before any event: a head after this one must know that this one
		// numbered them anew.
		h.persist(hj)
		h.run(hj, rj, *r.Workdir)
	}
}

// adoptWait is how long an adopted job waits for its nodes' agents to
// register again before it counts the missing ones lost.
func (h *Daemon) adoptWait() time.Duration {
	if h.cfg.AdoptWait > 0 {
		return h.cfg.AdoptWait
	}
	return DefaultAdoptWait
}

// DefaultAdoptWait is Config.AdoptWait's default: agents register again at
// their next heartbeat after the head is back, within a few seconds.
const DefaultAdoptWait = 30 * time.Second

// keep says whether a group an agent brings back as it registers is one
// that a job this head adopts still follows.
func (h *Daemon) keep(node, job string, attempt int) bool {
	h.mu.Lock()
	hj := h.jobs[job]
	h.mu.Unlock()
	if hj == nil {
		return false
	}
	hj.mu.Lock()
	defer hj.mu.Unlock()
	return hj.adopting && hj.attempt == attempt && !hj.state.Done() && slices.Contains(hj.nodes, node)
}

// confine puts a job's local storage and checkpoint to resume from, which
// its client names, on the head's disk where the head allows.
func (h *Daemon) confine(cfg *trainer.Config) error {
	var err error
	if cfg.Storage != "" {
		if cfg.Storage, err = trainer.ConfineLocal("--storage", cfg.Storage, h.results, h.roots); err != nil {
			return err
		}
	}
	if cfg.ResumeFrom != "" {
		if cfg.ResumeFrom, err = trainer.ConfineLocal("--resume-from", cfg.ResumeFrom, h.results, h.roots); err != nil {
			return err
		}
	}
	if cfg.RestartFrom != "" {
		if cfg.RestartFrom, err = trainer.ConfineLocal("--restart-from", cfg.RestartFrom, h.results, h.roots); err != nil {
			return err
		}
	}
	return nil
}

func (hj *headJob) summaryState() trainer.State {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	return hj.state
}

// find is a job by id or run name, the newest of that name.
func (h *Daemon) find(key string) *headJob {
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

func (h *Daemon) summaries() []*clusterpb.JobSummary {
	h.mu.Lock()
	jobs := make([]*headJob, 0, len(h.order))
	for _, id := range h.order {
		jobs = append(jobs, h.jobs[id])
	}
	h.mu.Unlock()
	pending := map[string]string{}
	for _, p := range h.nodes.Scheduler().Pending() {
		pending[p.Job] = p.Reason
	}
	out := make([]*clusterpb.JobSummary, 0, len(jobs))
	for _, j := range jobs {
		s := j.summary()
		if why, ok := pending[j.id]; ok {
			s.Queued, s.Reason = true, why
			s.Message = "waiting for resources: " + why
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].SubmittedUnixMs < out[b].SubmittedUnixMs })
	return out
}

// Status is the cluster as `rtrain status` shows it: nodes and jobs.
func (h *Daemon) Status() trainer.ClusterStatus {
	return trainer.StatusFromProto(h.statusReply(h.ctx))
}

// statusReply is Status in the wire form the Head service sends. A
// standby has neither nodes nor jobs: it says who leads.
func (h *Daemon) statusReply(ctx context.Context) *clusterpb.StatusReply {
	var rep *clusterpb.StatusReply
	if h.Leading() {
		rep = h.nodes.StatusReply()
		rep.Jobs = h.summaries()
		rep.Role = "active"
	} else {
		rep = &clusterpb.StatusReply{Version: h.nodes.StatusReply().Version, Role: "standby"}
	}
	if h.es != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		members, err := h.es.Members(ctx)
		if err != nil {
			h.log.Warn("heads from the store", "err", err)
		}
		for _, m := range members {
			rep.Heads = append(rep.Heads, &clusterpb.HeadStatus{Id: m.ID, Addr: m.Addr, Leader: m.Leader})
		}
	}
	return rep
}

// JobEvents returns at most limit (0: all) of job's events from index from
// on, the index to ask from next time, and a channel closed at the job's
// next event; ok is false for an unknown job (an id or a run name). The
// head keeps a bounded part of a job's output in memory (maxJobLogBytes,
// and less once it has ended: endedLogBytes): the indices skip the lines
// it dropped, and a warning in their place says where the log files are.
// res is the job's result, with its last event.
func (h *Daemon) JobEvents(job string, from, limit int) (events []trainer.Event, next int, res *trainer.Result, changed <-chan struct{}, ok bool) {
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
		var e trainer.Event
		if json.Unmarshal(ev.EventJson, &e) == nil {
			events = append(events, e)
		}
		if ev.ResultJson != nil {
			res = &trainer.Result{}
			_ = json.Unmarshal(ev.ResultJson, res)
		}
	}
	return events, next, res, changed, true
}
