package trainer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/rendezvous"
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
	j, err := t.newJob()
	if err != nil {
		return nil, err
	}
	return j.run(ctx)
}

type job struct {
	cfg        Config
	log        *slog.Logger
	id         string
	res        *Result
	script     string
	dir        string
	resultsDir string

	// Set by openStorage.
	storage checkpoint.Storage
	ckptRun *checkpoint.Run
	next    int              // index of the run's next checkpoint
	restore *cluster.Restore // what the workers resume from, or nil
	// launched is set once workers have been started.
	launched bool
}

func (t *Trainer) newJob() (*job, error) {
	cfg := t.cfg
	id := randomHex(6)
	name := cfg.Name
	if name == "" {
		stem := strings.TrimSuffix(filepath.Base(cfg.Script), filepath.Ext(cfg.Script))
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
	script, err := filepath.Abs(cfg.Script)
	if err != nil {
		return nil, fmt.Errorf("trainer: %w", err)
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
		dir:        dir,
		resultsDir: results,
		res:        &Result{Name: name, RunDir: runDir, LogDir: filepath.Join(runDir, "logs"), State: StatePending},
	}, nil
}

func (j *job) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if j.cfg.OnEvent != nil {
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

	py, err := FindPython(ctx, j.cfg.Python, j.script)
	if err != nil {
		return j.end(ctx, err)
	}
	j.res.Python = py
	j.setState(StatePending, fmt.Sprintf("python %s (torch %s, from %s)", py.Path, py.TorchVersion, py.Source))
	if err := j.openStorage(ctx); err != nil {
		return j.end(ctx, err)
	}
	defer j.closeStorage()
	if j.restore != nil {
		// The local copy serves this job only: a resumed run must not leave
		// a checkpoint's worth of disk behind each time.
		defer func() {
			_ = os.RemoveAll(j.restore.Dir)
			_ = os.Remove(filepath.Dir(j.restore.Dir))
		}()
		j.setState(StatePending, fmt.Sprintf("resuming from %s", j.restore.URI))
	}

	local, gpus, err := j.startCluster()
	if err != nil {
		return j.end(ctx, err)
	}
	defer gpus.Release()
	req := cluster.Request{
		Count:  j.cfg.Workers,
		Bundle: cluster.Resources{CPU: j.cfg.CPUsPerWorker, GPU: j.cfg.GPUsPerWorker, MemoryBytes: j.cfg.MemoryPerWorker},
	}
	plan, err := local.Head.Reserve(ctx, j.id, req)
	if err != nil {
		if errors.Is(err, cluster.ErrInfeasible) {
			err = invalid("%w", err)
		}
		return j.end(ctx, err)
	}
	defer local.Head.Release(j.id)
	j.setState(StateStarting, fmt.Sprintf("%s on %s", text.Plural(j.cfg.Workers, "worker"), text.Plural(1, "node")))

	ckpts, err := j.newCommitter(ctx, j.cfg.Workers)
	if err != nil {
		return j.end(ctx, err)
	}
	exits, ckptErr, err := j.attempt(ctx, local, plan, py, ckpts)
	// Every rank that reported a checkpoint before the end has it
	// committed, a failed job's included; only ctx cuts uploads short.
	ckpts.close()
	j.res.Workers = exits
	jerr := newJobError(exits)
	if ckptErr == nil && jerr == nil {
		select {
		case ckptErr = <-ckpts.failed:
		default:
		}
	}
	switch {
	case err != nil:
		return j.end(ctx, err)
	case ckptErr != nil:
		return j.end(ctx, ckptErr)
	case jerr != nil:
		return j.end(ctx, jerr)
	}
	return j.end(ctx, nil)
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
func (j *job) startCluster() (*cluster.Local, *cluster.GPUClaim, error) {
	o := cluster.NoOverrides
	o.NumCPUs = j.cfg.NumCPUs
	if j.cfg.NumGPUs != nil {
		o.NumGPUs = *j.cfg.NumGPUs
	}
	node, err := cluster.Discover("/dev", o)
	if err != nil {
		return nil, nil, fmt.Errorf("trainer: %w", err)
	}
	gpus := &cluster.GPUClaim{}
	// A job that asks more than the node has fails in placement, which
	// says so; one that would fit takes its GPUs before placement.
	if need := j.cfg.Workers * j.cfg.GPUsPerWorker; need > 0 && need <= len(node.GPUs) {
		if gpus, err = cluster.ClaimGPUs(node.GPUs, need); err != nil {
			return nil, nil, err // one line that names the holders, like placement's
		}
		node.GPUs, node.Total.GPU = gpus.GPUs, len(gpus.GPUs)
	}
	shim, err := pyshim.Install(shimCacheDir())
	if err != nil {
		gpus.Release()
		return nil, nil, fmt.Errorf("trainer: %w", err)
	}
	local, err := cluster.NewLocal(node, shim, j.log)
	if err != nil {
		gpus.Release()
		return nil, nil, err
	}
	return local, gpus, nil
}

func shimCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "rtrain")
	}
	return filepath.Join(os.TempDir(), "rtrain-cache")
}

// attempt runs the workers once, from launch to the last exit.
func (j *job) attempt(ctx context.Context, local *cluster.Local, plan cluster.Plan, py Interpreter, ckpts *committer) ([]WorkerExit, error, error) {
	agent := local.Agent
	port, err := agent.FreePort(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("trainer: %w", err)
	}
	node := agent.Node()
	workers := make([]cluster.WorkerSpec, len(plan.Assignments))
	for i, a := range plan.Assignments {
		workers[i] = cluster.WorkerSpec{LocalRank: i, GPUs: a.GPUs}
	}
	threads := int(j.cfg.CPUsPerWorker)
	if threads == 0 {
		threads = int(node.Total.CPU) / len(workers)
	}
	layout := rendezvous.Layout{
		RunID:            j.id,
		MasterAddr:       node.Addr,
		MasterPort:       port,
		LocalWorldSizes:  []int{len(workers)},
		MaxRestarts:      0,
		ThreadsPerWorker: max(threads, 1),
		LegacyNCCLEnv:    rendezvous.LegacyNCCL(py.TorchVersion),
	}
	grace := j.cfg.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	spec := cluster.GroupSpec{
		JobID:    j.id,
		RunName:  j.res.Name,
		Python:   py.Path,
		Script:   j.script,
		Args:     j.cfg.Args,
		Env:      append(os.Environ(), j.cfg.Env...),
		Dir:      j.dir,
		Layout:   layout,
		NodeRank: 0,
		Workers:  workers,
		LogDir:   j.res.LogDir,
		Grace:    grace,
		Stager:   ckpts.stager,
		Restore:  j.restore,
		Limits:   j.limits(),
	}
	groups := []*cluster.Group{}
	g, err := agent.Start(ctx, spec)
	if errors.Is(err, cluster.ErrNotIsolated) {
		return nil, nil, fmt.Errorf("strict isolation: %w", err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("trainer: %w", err)
	}
	groups = append(groups, g)
	j.launched = true
	exits, ckptErr := j.follow(ctx, groups, len(workers), ckpts)
	return exits, ckptErr, nil
}

// follow turns the groups' events into the job's until every group is done.
// The first worker to fail, a checkpoint that cannot be stored, or ctx
// ending stops every group. It returns how each worker ended and the
// checkpoint error when that came before any worker failed.
func (j *job) follow(ctx context.Context, groups []*cluster.Group, world int, ckpts *committer) ([]WorkerExit, error) {
	events := make(chan cluster.Event)
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() {
			for e := range g.Events() {
				events <- e
			}
		})
	}
	go func() { wg.Wait(); close(events) }()

	stopAll := func() {
		for _, g := range groups {
			g.Stop()
		}
	}
	pids := map[int]int{}
	var exits []WorkerExit
	started := 0
	done := ctx.Done()
	failedCkpt := ckpts.failed
	var ckptErr error
	workerFailed := false
	for {
		select {
		case <-done:
			done = nil
			j.log.Debug("context done; stopping workers")
			stopAll()
		case err := <-failedCkpt:
			failedCkpt = nil
			if !workerFailed {
				ckptErr = err
				j.log.Debug("checkpoint failed; stopping workers", "err", err)
				stopAll()
			}
		case e, ok := <-events:
			if !ok {
				sort.Slice(exits, func(a, b int) bool { return exits[a].Rank < exits[b].Rank })
				return exits, ckptErr
			}
			switch e.Kind {
			case cluster.WorkerStarted:
				pids[e.Rank] = e.PID
				j.emit(Event{Type: EventWorkerStarted, Time: e.Time, Rank: e.Rank, Node: e.NodeID, PID: e.PID})
				if started++; started == world {
					j.setState(StateRunning, "")
				}
			case cluster.WorkerLog:
				j.emit(Event{Type: EventLog, Time: e.Time, Rank: e.Rank, Node: e.NodeID, Stream: e.Stream, Line: e.Line})
			case cluster.WorkerReport:
				if e.Rank == 0 {
					j.res.Metrics = e.Report.Metrics
					j.res.Reports++
				}
				j.emit(Event{Type: EventReport, Time: e.Time, Rank: e.Rank, Node: e.NodeID, Metrics: e.Report.Metrics})
				ckpts.report(e)
			case cluster.NodeWarning:
				j.emit(Event{Type: EventWarning, Time: e.Time, Node: e.NodeID, Message: e.Line})
			case cluster.WorkerExited:
				w := WorkerExit{Rank: e.Rank, Node: e.NodeID, PID: pids[e.Rank], Exit: e.Exit, Tail: e.Tail}
				if !w.Success() {
					w.FailedAt = e.Exit.Time
					if !e.TracebackAt.IsZero() && e.TracebackAt.Before(w.FailedAt) {
						w.FailedAt = e.TracebackAt
					}
				}
				exits = append(exits, w)
				if !w.Success() && !w.Stopped {
					if ckptErr == nil {
						workerFailed = true
					}
					stopAll()
				}
				j.emit(Event{Type: EventWorkerExited, Time: e.Time, Rank: e.Rank, Node: e.NodeID, PID: w.PID, Exit: &w})
			}
		}
	}
}

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
