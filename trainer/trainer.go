package trainer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/agent"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/pyshim"
)

// ErrCancelled is returned by Fit when its context ended before the job.
var ErrCancelled = errors.New("job cancelled")

// Trainer runs one job.
type Trainer struct {
	cfg     Config
	log     *slog.Logger
	started atomic.Bool
}

// New checks cfg and returns a Trainer that will run it. It starts nothing.
// log may be nil.
func New(cfg Config, log *slog.Logger) (*Trainer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Args = append([]string(nil), cfg.Args...)
	cfg.Env = append([]string(nil), cfg.Env...)
	cfg.Params = maps.Clone(cfg.Params)
	return &Trainer{cfg: cfg, log: log}, nil
}

// Fit runs the job to its end: it finds python, starts the embedded cluster,
// reserves the workers' resources, launches them and follows them until all
// have exited. It returns the Result and, when the job did not succeed, an
// error: a *JobError when a worker failed, ErrCancelled when ctx ended first,
// an ErrInvalidConfig when the input was at fault. Fit may be called once.
func (t *Trainer) Fit(ctx context.Context) (*Result, error) {
	if !t.started.CompareAndSwap(false, true) {
		return nil, errors.New("trainer: Fit called twice; make a new Trainer for another run")
	}
	if t.cfg.Address != "" {
		return t.fitRemote(ctx)
	}
	j, err := t.newJob()
	if err != nil {
		return nil, err
	}
	return j.run(ctx)
}

type job struct {
	cfg    Config
	log    *slog.Logger
	id     string
	res    *Result
	script string
	// historyBytes is the size of Result.History as JSON.
	historyBytes int
	// function is Config.Function's absolute path; "" for a script.
	function   string
	dir        string
	resultsDir string

	// Set by openStorage.
	storage checkpoint.Storage
	ckptRun *checkpoint.Run
	next    int              // index of the run's next checkpoint
	restore *cluster.Restore // what the workers resume from, or nil
	// launched is set once workers have been started.
	launched bool

	emitMu sync.Mutex

	// rescale is set by follow when it stops the workers to restart them
	// with more.
	rescale bool

	// remote is set for a job the head runs for a client: its files come
	// in the shipment and python is found on each node.
	remote *remoteInput

	// req and failures are the attempt's request and the failures so far,
	// for its Adoption; onAdopt receives that (RemoteJob.OnAdoption).
	req      sched.Request
	failures []*JobError
	onAdopt  func(Adoption)
	// adopted is set for a job another head process ran (AdoptRemoteJob):
	// its attempt's workers run, the events before replayed[node] seen.
	adopted   *Adoption
	replayed  map[string]int64
	adoptWait time.Duration
}

// backend is the cluster a job runs on: the embedded one, or the head's.
type backend interface {
	Scheduler() *sched.Scheduler
	Agent(nodeID string) (cluster.NodeAgent, bool)
	// Joined is closed when the next node joins; nil where none can.
	Joined() <-chan struct{}
}

func (t *Trainer) newJob() (*job, error) {
	cfg := t.cfg
	id := randomHex(6)
	name := cfg.Name
	if name == "" {
		file := cfg.Script
		if cfg.Function != "" {
			file = cfg.Function
		}
		stem := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		name = fmt.Sprintf("%s-%s-%s", stem, time.Now().Format("20060102-150405"), id[:4])
	}
	results := cfg.ResultsDir
	if results == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, invalid("no home directory for the results; set ResultsDir")
		}
		results = filepath.Join(home, "rtrain_results")
	}
	var script, function string
	var err error
	if cfg.Script != "" {
		if script, err = filepath.Abs(cfg.Script); err != nil {
			return nil, fmt.Errorf("trainer: %w", err)
		}
	}
	if cfg.Function != "" {
		if function, err = filepath.Abs(cfg.Function); err != nil {
			return nil, fmt.Errorf("trainer: %w", err)
		}
	}
	dir := cfg.WorkingDir
	if dir == "" {
		if dir, err = os.Getwd(); err != nil {
			return nil, fmt.Errorf("trainer: %w", err)
		}
	}
	runDir := filepath.Join(results, name)
	return &job{
		cfg:        cfg,
		log:        t.log.With("run", name),
		id:         id,
		script:     script,
		function:   function,
		dir:        dir,
		resultsDir: results,
		res:        &Result{Name: name, RunDir: runDir, LogDir: filepath.Join(runDir, "logs"), JobID: id, State: StatePending},
	}, nil
}

// emit hands e to OnEvent. Events come from the goroutine following the
// workers and from the one storing checkpoints; the lock makes OnEvent
// see them one at a time, never two at once.
func (j *job) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if j.cfg.OnEvent != nil {
		j.emitMu.Lock()
		defer j.emitMu.Unlock()
		j.cfg.OnEvent(e)
	}
}

func (j *job) setState(s State, msg string) {
	j.res.State = s
	j.log.Debug("state", "state", s, "msg", msg)
	j.emit(Event{Type: EventState, State: s, Message: msg})
}

func (j *job) run(ctx context.Context) (*Result, error) {
	j.res.Started = time.Now()
	defer func() { j.res.Duration = time.Since(j.res.Started) }()
	j.setState(StatePending, "")

	var py Interpreter
	if j.remote == nil {
		// A remote job's python is found on each node.
		var err error
		if py, err = FindPython(ctx, j.cfg.Python, j.script); err != nil {
			return j.end(ctx, err)
		}
		j.res.Python = py
		j.setState(StatePending, fmt.Sprintf("python %s (torch %s, from %s)", py.Path, py.TorchVersion, py.Source))
	}
	if err := j.openStorage(ctx); err != nil {
		return j.end(ctx, err)
	}
	defer j.closeStorage()
	// The local copies of restored checkpoints serve this job only: a
	// resumed or restarted run must not leave a checkpoint's worth of disk
	// behind each time.
	defer os.RemoveAll(filepath.Join(j.res.RunDir, restoreDir))
	if j.restore != nil {
		j.setState(StatePending, fmt.Sprintf("resuming from %s", j.restore.URI))
	}

	var be backend
	if j.remote != nil {
		be = j.remote.backend
	} else {
		local, gpus, err := j.startCluster(ctx)
		if err != nil {
			return j.end(ctx, err)
		}
		defer gpus.Release()
		be = local
	}
	strategy, _ := sched.ParseStrategy(j.cfg.Placement)
	req := sched.Request{
		Count:    j.cfg.Workers,
		Bundle:   j.cfg.bundle(),
		Strategy: strategy,
	}
	var failures []*JobError
	first := 0
	if a := j.adopted; a != nil {
		failures, first, req = a.Failures, a.Attempt, a.Request
		j.res.Restarts, j.res.Reports, j.res.Metrics, j.res.History, j.res.ResumedFrom = a.Restarts, a.Reports, a.Metrics, a.History, a.ResumedFrom
		j.res.Started = a.Started
	}
	for attempt := first; ; attempt++ {
		var jerr *JobError
		var err error
		j.failures = failures
		if a := j.adopted; a != nil && attempt == first {
			jerr, err = j.runAdopted(ctx, be, a)
		} else {
			req.Count = j.size(be.Scheduler(), req)
			jerr, err = j.runAttempt(ctx, be, req, py, attempt)
		}
		if errors.Is(err, errRescale) {
			j.res.Restarts++
			j.emit(Event{Type: EventRestart, Attempt: attempt + 1, Message: j.rescaleMessage(req.Count)})
			continue
		}
		if err != nil || jerr == nil {
			return j.end(ctx, err)
		}
		jerr.Attempt = attempt
		failures = append(failures, jerr)
		if ctx.Err() != nil {
			return j.end(ctx, nil)
		}
		if why := j.noRestart(jerr, failures); why != "" {
			jerr.Earlier = failures[:len(failures)-1]
			jerr.NoRestart = why
			return j.end(ctx, jerr)
		}
		if err := j.restoreLatest(ctx); err != nil {
			return j.end(ctx, err)
		}
		j.res.Restarts++
		j.emit(Event{Type: EventRestart, Attempt: attempt + 1, Exit: &jerr.Cause, Message: j.restartMessage(jerr, failures)})
	}
}

// runAttempt places the workers, runs them once and waits for the
// checkpoints they reported. It returns the workers' failure, or err when
// the job must end for another reason (the input, storage, ctx).
func (j *job) runAttempt(ctx context.Context, be backend, req sched.Request, py Interpreter, attempt int) (*JobError, error) {
	plan, err := j.reserve(ctx, be.Scheduler(), req)
	// A restart after a node loss may find the cluster too small for now;
	// it waits for nodes to come back (the job can be stopped meanwhile)
	// where a first attempt that can never fit fails at once.
	for attempt > 0 && errors.Is(err, sched.ErrInfeasible) {
		joined := be.Joined()
		// Placed again with the node list as it is now: one may have
		// joined between the failed placement and this.
		if plan, err = j.reserve(ctx, be.Scheduler(), req); !errors.Is(err, sched.ErrInfeasible) {
			break
		}
		j.setState(StatePending, fmt.Sprintf("waiting for nodes to join: %v", err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-joined:
		}
	}
	if err != nil {
		if errors.Is(err, sched.ErrInfeasible) {
			err = invalid("%w", err)
		}
		return nil, err
	}
	defer be.Scheduler().Release(j.id)
	if err := crowded(be.Scheduler().Nodes(), plan, req); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("%s on %s", text.Plural(req.Count, "worker"), text.Plural(len(plan.Nodes()), "node"))
	if j.restore != nil {
		msg += ", from " + j.restore.URI
	}
	j.setState(StateStarting, msg)

	ckpts, err := j.newCommitter(ctx, req.Count)
	if err != nil {
		return nil, err
	}
	j.rescale = false
	j.req = req
	exits, ckptErr, err := j.attempt(ctx, be, plan, py, ckpts, attempt)
	if err != nil {
		ckpts.close()
		return nil, err
	}
	return j.attemptEnded(ctx, ckpts, exits, ckptErr)
}

// attemptEnded waits for the attempt's checkpoints and says how it ended:
// the workers' failure, or err when the job must end for another reason.
func (j *job) attemptEnded(ctx context.Context, ckpts *committer, exits []WorkerExit, ckptErr error) (*JobError, error) {
	// Every checkpoint that every rank reported before the end is
	// committed, a failed attempt's included, before a restart picks the
	// latest; only ctx cuts uploads short.
	ckpts.close()
	j.next = ckpts.next
	j.res.Workers = exits
	jerr := newJobError(exits)
	if ckptErr == nil && jerr == nil {
		select {
		case ckptErr = <-ckpts.failed:
		default:
		}
	}
	switch {
	case ckptErr != nil:
		return nil, ckptErr
	case jerr == nil && j.rescale && ctx.Err() == nil:
		if err := j.restoreLatest(ctx); err != nil {
			return nil, err
		}
		return nil, errRescale
	}
	return jerr, nil
}

// end settles the final state from err, records the run in storage, and
// returns the result with err.
func (j *job) end(ctx context.Context, err error) (*Result, error) {
	var jerr *JobError
	var state State
	switch {
	case err == nil && ctx.Err() != nil:
		err = fmt.Errorf("%w: %w", ErrCancelled, context.Cause(ctx))
		state = StateCancelled
	case err == nil:
		state = StateSucceeded
	case errors.As(err, &jerr):
		state = StateFailed
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("%w: %w", ErrCancelled, err)
		state = StateCancelled
	default:
		state = StateFailed
	}
	j.res.State = state
	j.settle(ctx, err)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	j.setState(state, msg)
	return j.res, err
}

// startCluster starts the embedded cluster on this machine, offering it
// the GPUs the job claims: those no other rtrain process holds.
func (j *job) startCluster(ctx context.Context) (*agent.Local, *discover.GPUClaim, error) {
	o := discover.NoOverrides
	o.NumCPUs = j.cfg.NumCPUs
	o.Custom = sched.MustCustom(j.cfg.Resources)
	if j.cfg.NumGPUs != nil {
		o.NumGPUs = *j.cfg.NumGPUs
	}
	node, err := discover.Node(ctx, j.log, "/dev", o)
	if err != nil {
		return nil, nil, fmt.Errorf("trainer: %w", err)
	}
	// Workers that reserve no cores all fit on paper; past this many a
	// node only thrashes (or runs out of processes) before the job can
	// start.
	if most := max(int(node.Total.CPU), 1) * maxWorkersPerCore; j.cfg.CPUsPerWorker == 0 && j.cfg.Workers > most {
		return nil, nil, invalid("--workers %d: this node has %s, and rtrain runs at most %d workers on it (%d a core); use fewer workers, or a cluster (--address)",
			j.cfg.Workers, text.Plural(int(node.Total.CPU), "core"), most, maxWorkersPerCore)
	}
	gpus := &discover.GPUClaim{}
	// A job that asks more than the node has fails in placement, which
	// says so; one that would fit takes its GPUs before placement.
	if need := j.cfg.Workers * j.cfg.GPUsPerWorker; need > 0 && need <= len(node.GPUs) {
		if gpus, err = discover.ClaimGPUs(node.GPUs, need); err != nil {
			return nil, nil, err // one line that names the holders, like placement's
		}
		node.GPUs, node.Total.GPU = gpus.GPUs, len(gpus.GPUs)
	}
	shim, err := pyshim.Install(pyshim.CacheDir())
	if err != nil {
		gpus.Release()
		return nil, nil, fmt.Errorf("trainer: %w", err)
	}
	local, err := agent.NewLocal(node, shim, j.log)
	if err != nil {
		gpus.Release()
		return nil, nil, err
	}
	return local, gpus, nil
}

// attempt runs the workers once, from launch to the last exit: one group
// per node (groupSpecs), started together (startGroups), then followed.
func (j *job) attempt(ctx context.Context, be backend, plan sched.Plan, py Interpreter, ckpts *committer, attempt int) ([]WorkerExit, error, error) {
	ids := plan.Nodes()
	agents := make([]cluster.NodeAgent, len(ids))
	nodes := make([]sched.Node, len(ids))
	for i, id := range ids {
		a, ok := be.Agent(id)
		if !ok {
			return lostBeforeStart(plan, id, fmt.Sprintf("node %s left the cluster before the workers started", id)), nil, nil
		}
		agents[i], nodes[i] = a, a.Node()
	}
	rdzv, err := agents[0].Rendezvous(ctx, cluster.RendezvousRequest{JobID: j.id, TorchVersion: py.TorchVersion, Python: j.cfg.Python})
	switch {
	case errors.Is(err, cluster.ErrNodeLost):
		return lostBeforeStart(plan, ids[0], err.Error()), nil, nil
	case err != nil && !fatalAtStart(ctx, err):
		return lostBeforeStart(plan, ids[0], couldNotStart(ids[0], err)), nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("trainer: %w", err)
	}
	specs := groupSpecs(j.groupBase(py, ckpts, attempt), plan, nodes, rdzv, j.cfg.CPUsPerWorker)
	var ship cluster.Shipment
	if j.remote != nil {
		ship = cluster.Shipment{Workdir: j.remote.workdir, Python: j.cfg.Python}
	}
	groups, release, errs := startGroups(ctx, agents, specs, ship)
	if errs != nil {
		exits, fatal := failedAtStart(ctx, ids, specs, errs)
		if errors.Is(fatal, cluster.ErrNotIsolated) {
			return nil, nil, fmt.Errorf("strict isolation: %w", fatal)
		}
		if fatal != nil {
			return nil, nil, fmt.Errorf("trainer: %w", fatal)
		}
		// A node that went away between placement and start, or could not
		// start its workers, fails the attempt like a worker would, so the
		// job can restart.
		j.launched = true
		return exits, nil, nil
	}
	defer release()
	j.launched = true
	ckpts.groups = groups
	if j.onAdopt != nil {
		j.onAdopt(j.adoption(attempt, plan, specs, ckpts.next))
	}
	exits, ckptErr := j.follow(ctx, groups, len(plan.Assignments), ckpts, j.scaleUp(be.Scheduler(), plan))
	return exits, ckptErr, nil
}

// reserve waits for the job's placement group, saying why it waits when
// it does.
func (j *job) reserve(ctx context.Context, s *sched.Scheduler, req sched.Request) (sched.Plan, error) {
	return s.ReserveOrQueue(ctx, j.id, req, func(reason string) {
		j.res.State = StatePending
		j.emit(Event{Type: EventState, State: StatePending, Message: "waiting for resources: " + reason, Queued: true})
	})
}

// crowded refuses a plan that puts more workers that reserve no cores on
// a node than maxWorkersPerCore a core: all fit on paper, and the node
// only thrashes, or runs out of processes, before the job can start.
func crowded(nodes []sched.NodeState, plan sched.Plan, req sched.Request) error {
	if req.Bundle.CPU > 0 {
		return nil
	}
	per := map[string]int{}
	for _, a := range plan.Assignments {
		per[a.NodeID]++
	}
	for _, n := range nodes {
		if most := max(int(n.Total.CPU), 1) * maxWorkersPerCore; per[n.ID] > most {
			return invalid("--workers %d: placement puts %d on node %s, which has %s, and rtrain runs at most %d workers there (%d a core) when they reserve no cores; give --cpus-per-worker, --placement SPREAD, or fewer workers",
				req.Count, per[n.ID], n.ID, text.Plural(int(n.Total.CPU), "core"), most, maxWorkersPerCore)
		}
	}
	return nil
}

// maxWorkersPerCore bounds the workers of a job on one node that
// reserve no cores (Config.CPUsPerWorker 0).
const maxWorkersPerCore = 64

// limits are what each worker is held to, from the config.
func (j *job) limits() cluster.Limits {
	l := cluster.Limits{
		MemoryBytes:  j.cfg.MemoryPerWorker,
		CPUs:         j.cfg.CPUsPerWorker,
		Pids:         j.cfg.PidsPerWorker,
		GPUIsolation: cluster.IsolateJob,
		Strict:       j.cfg.Isolation == IsolationStrict,
	}
	if l.Pids == 0 {
		l.Pids = DefaultPidsPerWorker
	}
	if j.cfg.GPUIsolation == GPUIsolationWorker {
		l.GPUIsolation = cluster.IsolateWorker
	}
	return l
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// afterFunc calls f in its own goroutine once ctx is done, like
// context.AfterFunc, but its stop also waits for an f that has begun to
// return: the caller owns f's goroutine.
func afterFunc(ctx context.Context, f func()) (stop func()) {
	done := make(chan struct{})
	stopF := context.AfterFunc(ctx, func() {
		defer close(done)
		f()
	})
	return func() {
		if !stopF() {
			<-done
		}
	}
}
