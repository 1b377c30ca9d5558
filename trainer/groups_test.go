package trainer

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/rendezvous"
)

// An attempt's plan becomes one group per node: ranks contiguous per node
// in the plan's order, the first node hosting the rendezvous, each node's
// cores shared among its workers unless CPUsPerWorker says otherwise.
func TestGroupSpecs(t *testing.T) {
	base := cluster.GroupSpec{JobID: "j1", Script: "/w/train.py", Env: []string{"A=1"}, Grace: time.Second,
		Layout: rendezvous.Layout{RunID: "j1", RestartCount: 2, MaxRestarts: 3}}
	rdzv := cluster.Rendezvous{Port: 29500, AgentStore: true}
	node := func(id, addr string, cpus float64) sched.Node {
		return sched.Node{ID: id, Addr: addr, Total: sched.Resources{CPU: cpus}}
	}
	on := func(ids ...string) sched.Plan {
		var p sched.Plan
		for i, id := range ids {
			p.Assignments = append(p.Assignments, sched.Assignment{NodeID: id, GPUs: []int{i}})
		}
		return p
	}
	layout := func(sizes []int, threads int) rendezvous.Layout {
		l := base.Layout
		l.MasterAddr, l.MasterPort, l.AgentStore = "10.0.0.1", 29500, true
		l.LocalWorldSizes, l.ThreadsPerWorker = sizes, threads
		return l
	}
	group := func(nodeRank int, l rendezvous.Layout, workers ...cluster.WorkerSpec) cluster.GroupSpec {
		s := base
		s.Env = []string{"A=1"}
		s.NodeRank, s.Layout, s.Workers = nodeRank, l, workers
		return s
	}
	w := func(local, gpu int) cluster.WorkerSpec { return cluster.WorkerSpec{LocalRank: local, GPUs: []int{gpu}} }
	tests := []struct {
		name  string
		plan  sched.Plan
		nodes []sched.Node
		cpus  float64
		want  []cluster.GroupSpec
	}{
		{"one node, its cores shared", on("a", "a"), []sched.Node{node("a", "10.0.0.1", 8)}, 0, []cluster.GroupSpec{
			group(0, layout([]int{2}, 4), w(0, 0), w(1, 1))}},
		{"two nodes, rank 0's hosts the rendezvous", on("a", "a", "b"), []sched.Node{node("a", "10.0.0.1", 8), node("b", "10.0.0.2", 3)}, 0, []cluster.GroupSpec{
			group(0, layout([]int{2, 1}, 4), w(0, 0), w(1, 1)),
			group(1, layout([]int{2, 1}, 3), w(0, 2))}},
		{"whole cores of CPUsPerWorker", on("a", "a"), []sched.Node{node("a", "10.0.0.1", 8)}, 2.5, []cluster.GroupSpec{
			group(0, layout([]int{2}, 2), w(0, 0), w(1, 1))}},
		{"at least one thread", on("a", "a", "a"), []sched.Node{node("a", "10.0.0.1", 2)}, 0, []cluster.GroupSpec{
			group(0, layout([]int{3}, 1), w(0, 0), w(1, 1), w(2, 2))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := groupSpecs(base, tt.plan, tt.nodes, rdzv, tt.cpus)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("group specs (-want +got):\n%s", diff)
			}
			for i := range got {
				got[i].Env[0] = "CHANGED=1"
			}
			assert.Equal(t, []string{"A=1"}, base.Env, "each group's environment is its own")
		})
	}
}

// What the groups share comes from the config: a local job's environment
// is rtrain's plus the job's, a remote job's the job's alone, to which the
// node adds its own; the script is the shipment's there.
func TestGroupBase(t *testing.T) {
	j := &job{cfg: Config{Args: []string{"--epochs", "2"}, Env: []string{"X=1"}, MaxFailures: 3, CPUsPerWorker: 2},
		id: "j1", res: &Result{Name: "run", LogDir: "/r/run/logs"}, script: "/w/train.py", dir: "/w"}
	ckpts := &committer{inFlight: 2}
	py := Interpreter{Path: "/usr/bin/python3", TorchVersion: "2.1.0"}

	local := j.groupBase(py, ckpts, 1)
	assert.Equal(t, append(os.Environ(), "X=1"), local.Env)
	assert.Equal(t, "/w/train.py", local.Script)
	assert.Equal(t, DefaultGrace, local.Grace, "the zero Grace")
	assert.Equal(t, rendezvous.Layout{RunID: "j1", RestartCount: 1, MaxRestarts: 3, LegacyNCCLEnv: true}, local.Layout)
	assert.Equal(t, cluster.Limits{CPUs: 2, Pids: DefaultPidsPerWorker, GPUIsolation: cluster.IsolateJob}, local.Limits)
	assert.Equal(t, 2, local.StagedInFlight)
	assert.Equal(t, "/r/run/logs", local.LogDir)

	j.remote = &remoteInput{script: "train.py"}
	remote := j.groupBase(py, ckpts, 1)
	assert.Equal(t, []string{"X=1"}, remote.Env)
	assert.Equal(t, "train.py", remote.Script)
}

// fakeAgent starts groups as start says.
type fakeAgent struct {
	start func(ctx context.Context) error
}

func (a *fakeAgent) Node() sched.Node { return sched.Node{} }
func (a *fakeAgent) Rendezvous(context.Context, cluster.RendezvousRequest) (cluster.Rendezvous, error) {
	return cluster.Rendezvous{}, nil
}

func (a *fakeAgent) StartGroup(ctx context.Context, _ cluster.GroupSpec, _ cluster.Shipment) (cluster.GroupRunner, error) {
	if err := a.start(ctx); err != nil {
		return nil, err
	}
	return newFakeGroup(ctx), nil
}

// fakeGroup runs until stopped or its context ends; its events then close.
type fakeGroup struct {
	events  chan cluster.Event
	stop    chan struct{}
	once    sync.Once
	stopped atomic.Bool
}

func newFakeGroup(ctx context.Context) *fakeGroup {
	g := &fakeGroup{events: make(chan cluster.Event), stop: make(chan struct{})}
	go func() {
		defer close(g.events)
		select {
		case <-ctx.Done():
		case <-g.stop:
		}
	}()
	return g
}

func (g *fakeGroup) Events() <-chan cluster.Event { return g.events }
func (g *fakeGroup) Stop()                        { g.stopped.Store(true); g.once.Do(func() { close(g.stop) }) }
func (g *fakeGroup) DumpStacks()                  {}

// Groups start together; the first that cannot start cuts short those
// still starting (they count as stopped, not failed) and stops those that
// started; an error that ends the job, or a lost node, is kept however
// late it comes.
func TestStartGroups(t *testing.T) {
	boom := errors.New("spawn failed")
	ok := func(context.Context) error { return nil }
	fails := func(context.Context) error { return boom }
	// waits is a start still under way when a peer fails: it ends with
	// the cut.
	waits := func(err error) func(context.Context) error {
		return func(ctx context.Context) error {
			<-ctx.Done()
			if err != nil {
				return err
			}
			return ctx.Err()
		}
	}
	lost := cluster.ErrNodeLost
	tests := []struct {
		name    string
		starts  []func(context.Context) error
		wantErr []error // nil: all started
	}{
		{"all start", []func(context.Context) error{ok, ok, ok}, nil},
		{"one fails, one started", []func(context.Context) error{ok, fails}, []error{nil, boom}},
		{"one fails, one still starting", []func(context.Context) error{waits(nil), fails}, []error{nil, boom}},
		{"a lost node is kept", []func(context.Context) error{waits(lost), fails}, []error{lost, boom}},
		{"an error that ends the job is kept", []func(context.Context) error{waits(cluster.ErrNotIsolated), fails}, []error{cluster.ErrNotIsolated, boom}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agents := make([]cluster.NodeAgent, len(tt.starts))
			for i, s := range tt.starts {
				agents[i] = &fakeAgent{start: s}
			}
			groups, release, errs := startGroups(t.Context(), agents, make([]cluster.GroupSpec, len(agents)), cluster.Shipment{})
			if tt.wantErr == nil {
				require.Nil(t, errs)
				require.Len(t, groups, len(agents))
				for _, g := range groups {
					select {
					case <-g.Events():
						t.Fatal("a group that started ended before it was released")
					default:
					}
				}
				release()
				for _, g := range groups {
					for range g.Events() { // released: its context ends it
					}
					assert.False(t, g.(*fakeGroup).stopped.Load())
				}
				return
			}
			assert.Nil(t, groups)
			assert.Nil(t, release)
			require.Len(t, errs, len(tt.wantErr))
			for i, want := range tt.wantErr {
				if want == nil {
					assert.NoError(t, errs[i], "node %d", i)
				} else {
					assert.ErrorIs(t, errs[i], want, "node %d", i)
				}
			}
		})
	}
}

// afterFunc's stop waits for an f that has begun.
func TestAfterFuncStopWaits(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	begun, finish := make(chan struct{}), make(chan struct{})
	var done atomic.Bool
	stop := afterFunc(ctx, func() {
		close(begun)
		<-finish
		done.Store(true)
	})
	cancel()
	<-begun
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned before f did")
	case <-time.After(20 * time.Millisecond):
	}
	close(finish)
	<-stopped
	assert.True(t, done.Load())

	called := false
	stop = afterFunc(t.Context(), func() { called = true })
	stop()
	assert.False(t, called, "stopped before ctx ended")
}
