package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rtrain/rtrain/checkpoint/stage"
	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/rendezvous"
	"github.com/rtrain/rtrain/rendezvous/store"
)

// tailLines is how much of a worker's stderr is kept for the root cause.
const tailLines = 40

// Agent runs worker groups on one node.
type Agent struct {
	// node is the node as the agent was made; its id is the one asked
	// for, and name the one to go by.
	node    sched.Node
	shimDir string
	log     *slog.Logger
	// name is the node's id and the logger that says it. The head may
	// give the node another id than it asked for (hosts cloned from one
	// image ask for one name), and another when it registers again.
	name atomic.Pointer[agentName]
	// lease, when set, fences every worker: its reaper kills it once the
	// agent stops renewing (launcher.Spec.Lease).
	lease string

	mu     sync.Mutex
	stores map[string]*store.Server // by job id
}

// agentName is what an agent goes by.
type agentName struct {
	id  string
	log *slog.Logger
}

// New returns the agent of node. shimDir is the directory holding the
// Python package rtrain (pyshim.Install); it goes first on PYTHONPATH.
func New(node sched.Node, shimDir string, log *slog.Logger) *Agent {
	a := &Agent{node: node, shimDir: shimDir, log: log, stores: map[string]*store.Server{}}
	a.rename(node.ID)
	return a
}

// rename makes id the node's id in the agent's events, messages and log:
// the one the head gave it when it registered. Groups already running
// keep the id they started under.
func (a *Agent) rename(id string) {
	a.name.Store(&agentName{id: id, log: a.log.With("node", id)})
}

// Node is the node this agent runs on, under the id it goes by.
func (a *Agent) Node() sched.Node {
	n := a.node
	n.ID = a.name.Load().id
	return n
}

// FreePort picks a free port on this node.
func (a *Agent) FreePort(ctx context.Context) (int, error) {
	return rendezvous.FreePort(ctx, a.node.Addr)
}

// hostRendezvous prepares the rendezvous of job, whose rank 0 runs on this
// node. For a torch whose store protocol rtrain speaks, the agent hosts
// the store, listening before any worker starts, so no rank waits out
// torch's one-second retry after a refused connection to a rank 0 that is
// still importing torch. Otherwise it picks a free port for rank 0's
// store. The store closes when the job's group on this node ends.
func (a *Agent) hostRendezvous(ctx context.Context, jobID, torchVersion string) (cluster.Rendezvous, error) {
	if !rendezvous.AgentStoreSupported(torchVersion) {
		p, err := a.FreePort(ctx)
		return cluster.Rendezvous{Port: p}, err
	}
	srv, err := store.Listen(ctx, net.JoinHostPort(a.node.Addr, "0"), a.name.Load().log)
	if err != nil {
		return cluster.Rendezvous{}, fmt.Errorf("cluster: rendezvous store: %w", err)
	}
	a.mu.Lock()
	if old := a.stores[jobID]; old != nil {
		_ = old.Close()
	}
	a.stores[jobID] = srv
	a.mu.Unlock()
	return cluster.Rendezvous{Port: srv.Port(), AgentStore: true}, nil
}

// Close closes the rendezvous stores of jobs whose groups never started
// here (the head gave up after the rendezvous): the rest close with their
// groups.
func (a *Agent) Close() {
	a.mu.Lock()
	stores := a.stores
	a.stores = map[string]*store.Server{}
	a.mu.Unlock()
	for _, srv := range stores {
		_ = srv.Close()
	}
}

// closeStore closes job's rendezvous store, if this agent hosts one.
func (a *Agent) closeStore(jobID string) {
	a.mu.Lock()
	srv := a.stores[jobID]
	delete(a.stores, jobID)
	a.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Group is a running worker group.
type Group struct {
	spec   cluster.GroupSpec
	agent  *Agent
	name   *agentName // the agent's as the group started
	events chan cluster.Event

	// ready is closed once the events of the start (NodeWarning, every
	// WorkerStarted) are out: the workers' own events wait for it, so they
	// come after their rank's start, and Start never waits on a reader
	// that its caller has not yet had the chance to be.
	ready chan struct{}

	stopOnce sync.Once
	// stoppedAt is when Stop was first called, in Unix nanoseconds; 0 before.
	stoppedAt atomic.Int64
	stopCh    chan struct{}

	// ranks orders each worker's reports before its exit; the map is
	// filled in Start and only read after.
	ranks map[int]*rankState
	// workers is set in Start and only read after.
	workers []*worker
}

// rankState is held while a report of the rank is handled and when its
// exit is announced, so no report event follows the exit event.
type rankState struct {
	mu     sync.Mutex
	exited bool
}

// Start launches the group's workers and returns at once. Events delivers
// everything that happens to them and is closed when every worker has exited
// and been cleaned up; the caller must read it to the end. The first worker
// to fail stops the others. Cancelling ctx stops the group too.
func (a *Agent) Start(ctx context.Context, spec cluster.GroupSpec) (*Group, error) {
	if len(spec.Workers) == 0 {
		return nil, errors.New("cluster: a worker group needs at least one worker")
	}
	name := a.name.Load()
	iso := planIsolation(name.id, spec.Limits, probeHost(a.node))
	if iso.missing != nil && spec.Limits.Strict {
		a.closeStore(spec.JobID)
		return nil, iso.missing
	}
	if err := os.MkdirAll(spec.LogDir, 0o755); err != nil {
		a.closeStore(spec.JobID)
		return nil, fmt.Errorf("cluster: create log directory: %w", err)
	}
	// A short private directory: Unix socket paths are limited to 107 bytes
	// and the run directory can be deep.
	sockDir, err := os.MkdirTemp("", "rtrain-")
	if err != nil {
		a.closeStore(spec.JobID)
		return nil, fmt.Errorf("cluster: create socket directory: %w", err)
	}
	g := &Group{spec: spec, agent: a, name: name, events: make(chan cluster.Event, 256), ready: make(chan struct{}), stopCh: make(chan struct{}), ranks: map[int]*rankState{}}
	var early []cluster.Event
	if iso.missing != nil {
		early = append(early, cluster.Event{Kind: cluster.NodeWarning, Line: iso.missing.Error()})
	}
	for _, ws := range spec.Workers {
		g.ranks[spec.Layout.Rank(spec.NodeRank, ws.LocalRank)] = &rankState{}
	}
	srv, err := pyshim.Listen(filepath.Join(sockDir, "agent.sock"), g, name.log)
	if err != nil {
		_ = os.RemoveAll(sockDir)
		a.closeStore(spec.JobID)
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cleanup := func() {
		_ = srv.Close()
		_ = os.RemoveAll(sockDir)
		a.closeStore(spec.JobID)
	}

	workers := make([]*worker, 0, len(spec.Workers))
	for _, ws := range spec.Workers {
		w, err := g.startWorker(ws, srv.Addr(), iso)
		if err != nil {
			// Their output waits for ready: let it go to nobody.
			close(g.ready)
			var drain sync.WaitGroup
			defer drain.Wait()
			drain.Go(func() {
				for range g.events {
				}
			})
			for _, w := range workers {
				w.proc.Stop(context.Background(), 0)
				w.finish()
				_ = w.proc.Reap()
			}
			cleanup()
			close(g.events)
			return nil, err
		}
		workers = append(workers, w)
		early = append(early, cluster.Event{Kind: cluster.WorkerStarted, Rank: w.rank, PID: w.proc.Pid()})
	}

	g.workers = workers
	go g.run(ctx, workers, early, cleanup)
	return g, nil
}

// Events is the group's event stream; see Start.
func (g *Group) Events() <-chan cluster.Event { return g.events }

// Stop begins stopping every worker: SIGTERM, then SIGKILL after the grace
// period. It does not wait; Events closes when they are gone.
func (g *Group) Stop() {
	g.stopOnce.Do(func() {
		g.stoppedAt.Store(time.Now().UnixNano())
		close(g.stopCh)
	})
}

// DumpStacks sends SIGUSR1 to every worker (not what it spawned): the
// faulthandler that rtrain's sitecustomize installs prints each thread's
// Python stack to stderr.
func (g *Group) DumpStacks() {
	for _, w := range g.workers {
		if err := syscall.Kill(w.proc.Pid(), syscall.SIGUSR1); err != nil && !errors.Is(err, syscall.ESRCH) {
			g.name.log.Warn("ask for python stacks", "rank", w.rank, "err", err)
		}
	}
}

// Report implements pyshim.Handler. A checkpoint is staged before the
// worker's report() returns; the stop of the group ends the wait for room.
func (g *Group) Report(ctx context.Context, r pyshim.Report) error {
	rs := g.ranks[r.Rank]
	if rs == nil {
		return fmt.Errorf("rank %d is not a worker of this group", r.Rank)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.exited {
		return errors.New("the worker has exited")
	}
	var staged string
	var files []string
	if r.Checkpoint != "" {
		if g.spec.Stager == nil {
			return stage.ErrNoStorage
		}
		ctx, cancel := cluster.UntilClosed(ctx, g.stopCh)
		defer cancel()
		var err error
		if staged, files, err = g.spec.Stager.Stage(ctx, r.Seq, r.Checkpoint); err != nil {
			return err
		}
	}
	g.emit(cluster.Event{Kind: cluster.WorkerReport, Rank: r.Rank, Time: r.Time, Report: r, Staged: staged, Files: files})
	return nil
}

// emit sends a worker's event, once the start's events are out.
func (g *Group) emit(e cluster.Event) {
	<-g.ready
	g.send(e)
}

func (g *Group) send(e cluster.Event) {
	e.NodeID = g.name.id
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	g.events <- e
}

type worker struct {
	rank int
	proc *launcher.Process
	log  *os.File
	out  *launcher.LineWriter
	err  *launcher.LineWriter
	tail *launcher.Tail
	// exitFile is where the worker notes how its program ended;
	// returnFile where a train function's return value goes.
	exitFile, returnFile string
	logger               *slog.Logger
}

// note is what the worker noted of its end (pyshim.ReadExitNote). The file
// is its own; it goes once read.
func (w *worker) note() pyshim.ExitNote {
	n, err := pyshim.ReadExitNote(w.exitFile)
	if err != nil {
		w.logger.Warn("read the worker's exit note", "rank", w.rank, "err", err)
	}
	return n
}

// returned is what the worker's train function returned, pickled; nil
// for a script, a rank other than 0, or a function that returned nothing.
func (w *worker) returned() []byte {
	b, err := pyshim.ReadReturn(w.returnFile)
	if err != nil {
		w.logger.Warn("read the train function's return value", "rank", w.rank, "err", err)
	}
	return b
}

// finish flushes the partial last lines and closes the log file; the process
// must have exited.
func (w *worker) finish() {
	<-w.proc.Done()
	_ = w.out.Close()
	_ = w.err.Close()
	_ = w.log.Close()
}

func (g *Group) startWorker(ws cluster.WorkerSpec, sockPath string, iso isolation) (*worker, error) {
	s := g.spec
	rank := s.Layout.Rank(s.NodeRank, ws.LocalRank)
	env, err := s.Layout.WorkerEnv(s.Env, s.NodeRank, ws.LocalRank)
	if err != nil {
		return nil, fmt.Errorf("cluster: rank %d: %w", rank, err)
	}
	// Absolute: the worker may start in, or move to, another directory.
	exitFile, err := filepath.Abs(filepath.Join(s.LogDir, fmt.Sprintf("rank_%d.exit.json", rank)))
	if err != nil {
		return nil, fmt.Errorf("cluster: rank %d: %w", rank, err)
	}
	returnFile := strings.TrimSuffix(exitFile, ".exit.json") + ".return.pkl"
	for _, f := range []string{exitFile, returnFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("cluster: rank %d: an earlier attempt's %s: %w", rank, filepath.Base(f), err)
		}
	}
	env = g.agentEnv(env, ws, sockPath, exitFile, returnFile)
	logFile, err := os.OpenFile(filepath.Join(s.LogDir, fmt.Sprintf("rank_%d.log", rank)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: rank %d log: %w", rank, err)
	}
	w := &worker{rank: rank, log: logFile, tail: launcher.NewTail(tailLines), exitFile: exitFile, returnFile: returnFile, logger: g.name.log}
	var logMu sync.Mutex
	lineTo := func(stream string) *launcher.LineWriter {
		return &launcher.LineWriter{Emit: func(line string) {
			logMu.Lock()
			_, _ = logFile.WriteString(line + "\n")
			logMu.Unlock()
			if stream == "stderr" {
				w.tail.Add(line)
			}
			g.emit(cluster.Event{Kind: cluster.WorkerLog, Rank: rank, Stream: stream, Line: line})
		}}
	}
	w.out, w.err = lineTo("stdout"), lineTo("stderr")
	argv := append([]string{s.Script}, s.Args...)
	if s.Module != "" {
		argv = append([]string{"-m", s.Module}, s.Args...)
	}
	proc, err := launcher.Start(launcher.Spec{
		Path:   s.Python,
		Args:   argv,
		Env:    env,
		Dir:    s.Dir,
		Stdout: w.out,
		Stderr: w.err,
		Cgroup: g.workerCgroup(iso, ws, rank),
		Lease:  g.agent.lease,
	})
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("cluster: rank %d: %w", rank, err)
	}
	w.proc = proc
	return w, nil
}

// agentEnv adds what the shim and GPU placement need to a worker's env.
func (g *Group) agentEnv(env []string, ws cluster.WorkerSpec, sockPath, exitFile, returnFile string) []string {
	m := rendezvous.ParseEnv(env)
	m[pyshim.AddrEnv] = sockPath
	m[pyshim.ExitFileEnv] = exitFile
	m[pyshim.ReturnFileEnv] = returnFile
	m[pyshim.RunNameEnv] = g.spec.RunName
	m[pyshim.JobIDEnv] = g.spec.JobID
	delete(m, pyshim.CheckpointDirEnv)
	delete(m, pyshim.CheckpointURIEnv)
	delete(m, pyshim.CheckpointIndexEnv)
	if r := g.spec.Restore; r != nil {
		m[pyshim.CheckpointDirEnv] = r.Dir
		m[pyshim.CheckpointURIEnv] = r.URI
		m[pyshim.CheckpointIndexEnv] = strconv.Itoa(r.Index)
	}
	if exe, err := os.Executable(); err == nil {
		m[pyshim.BinaryEnv] = exe
	}
	if p := m["PYTHONPATH"]; p != "" {
		m["PYTHONPATH"] = g.agent.shimDir + string(os.PathListSeparator) + p
	} else {
		m["PYTHONPATH"] = g.agent.shimDir
	}
	if _, ok := m["PYTHONUNBUFFERED"]; !ok {
		m["PYTHONUNBUFFERED"] = "1"
	}
	// gloo and NCCL advertise the address of the interface they pick; on
	// a host whose name resolves to 127.0.0.1 that is loopback, and a peer
	// on another node is refused while rank 0 waits for it forever.
	if iface := g.agent.node.Iface; iface != "" {
		for _, k := range []string{"GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"} {
			if _, set := m[k]; !set {
				m[k] = iface
			}
		}
	}
	g.gpuEnv(m, ws)
	return rendezvous.FormatEnv(m)
}

// run watches the workers until all have exited, stops the rest when one
// fails or ctx ends, then cleans up and closes the event stream.
func (g *Group) run(ctx context.Context, workers []*worker, early []cluster.Event, cleanup func()) {
	defer close(g.events)
	for _, e := range early {
		g.send(e)
	}
	close(g.ready)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			w.finish()
			exit := w.proc.Exit()
			note := w.note()
			e := cluster.Event{Kind: cluster.WorkerExited, Rank: w.rank, Time: exit.Time, Exit: exit, Tail: w.tail.Lines(), RaisedAt: note.Raised, Exception: note.Exception, Return: w.returned()}
			if note.FinishedCleanly() {
				e.FinishedAt, e.AfterFinish = note.Finished, w.tail.Since(note.Finished)
			}
			if !exit.Success() && !e.CrashedInTeardown() {
				g.Stop() // before the event: the survivors must not wait on the reader
			}
			rs := g.ranks[w.rank]
			rs.mu.Lock() // waits for a report being staged: the stop ends it
			rs.exited = true
			rs.mu.Unlock()
			if !e.RaisedAt.IsZero() {
				stopped := g.stoppedAt.Load()
				e.RaisedBeforeStop = stopped == 0 || e.RaisedAt.UnixNano() < stopped
			}
			g.emit(e)
		})
	}
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()

	select {
	case <-all:
	case <-ctx.Done():
		g.Stop()
	case <-g.stopCh:
	}
	select {
	case <-all:
	default:
		// Stop every worker at once so a survivor blocked in a collective
		// is not waiting on one that is already gone.
		var stops sync.WaitGroup
		for _, w := range workers {
			stops.Go(func() { w.proc.Stop(context.Background(), g.spec.Grace) })
		}
		stops.Wait()
		<-all
	}
	for _, w := range workers {
		if err := w.proc.Reap(); err != nil {
			g.name.log.Warn("worker cleanup", "rank", w.rank, "err", err)
		}
	}
	cleanup()
}

// Rendezvous implements NodeAgent for the embedded agent.
func (a *Agent) Rendezvous(ctx context.Context, req cluster.RendezvousRequest) (cluster.Rendezvous, error) {
	return a.hostRendezvous(ctx, req.JobID, req.TorchVersion)
}

// StartGroup implements NodeAgent for the embedded agent, whose files are
// this process's: the shipment is not needed.
func (a *Agent) StartGroup(ctx context.Context, spec cluster.GroupSpec, _ cluster.Shipment) (cluster.GroupRunner, error) {
	g, err := a.Start(ctx, spec)
	if err != nil {
		return nil, err // not a nil *Group in a non-nil interface
	}
	return g, nil
}

var _ cluster.NodeAgent = (*Agent)(nil)
