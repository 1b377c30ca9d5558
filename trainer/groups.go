package trainer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/rendezvous"
)

// groupBase is what every node's group of an attempt shares: the job's
// program, environment, files and limits, and the job-wide part of the
// rendezvous contract.
func (j *job) groupBase(py Interpreter, ckpts *committer, attempt int) cluster.GroupSpec {
	grace := j.cfg.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	base := cluster.GroupSpec{
		JobID:   j.id,
		RunName: j.res.Name,
		Python:  py.Path,
		Script:  j.script,
		Args:    j.cfg.Args,
		Env:     append(os.Environ(), j.cfg.Env...),
		Dir:     j.dir,
		Layout: rendezvous.Layout{
			RunID:         j.id,
			RestartCount:  attempt,
			MaxRestarts:   j.cfg.MaxFailures,
			LegacyNCCLEnv: rendezvous.LegacyNCCL(py.TorchVersion),
		},
		LogDir:         j.res.LogDir,
		Grace:          grace,
		Stager:         ckpts.stager,
		StagedInFlight: ckpts.inFlight,
		Restore:        j.restore,
		Limits:         j.limits(),
	}
	if j.function != "" {
		base.Script, base.Module, base.Args = "", pyshim.FunctionModule, []string{j.function}
	}
	if j.remote != nil {
		// The node adds its own environment and finds its python.
		base.Env = j.cfg.Env
		base.Script = j.remote.script
		if j.function != "" {
			// Shipped at the top of the working directory, where the
			// workers start.
			base.Script, base.Args = "", []string{FunctionFile}
		}
	}
	return base
}

// groupSpecs lays an attempt's workers out on the plan's nodes: one group
// per node in plan.Nodes() order, which nodes describes, ranks contiguous
// per node in the plan's order, the first node hosting the rendezvous
// (rdzv). base is what the groups share (groupBase); cpusPerWorker is
// Config.CPUsPerWorker, whose whole cores are each worker's threads, where
// 0 shares a node's cores among its workers.
func groupSpecs(base cluster.GroupSpec, plan sched.Plan, nodes []sched.Node, rdzv cluster.Rendezvous, cpusPerWorker float64) []cluster.GroupSpec {
	ids := plan.Nodes()
	local := make([][]cluster.WorkerSpec, len(ids))
	for _, a := range plan.Assignments {
		i := slices.Index(ids, a.NodeID)
		local[i] = append(local[i], cluster.WorkerSpec{LocalRank: len(local[i]), GPUs: a.GPUs})
	}
	sizes := make([]int, len(ids))
	for i := range local {
		sizes[i] = len(local[i])
	}
	layout := base.Layout
	layout.MasterAddr = nodes[0].Addr
	layout.MasterPort = rdzv.Port
	layout.AgentStore = rdzv.AgentStore
	layout.LocalWorldSizes = sizes
	specs := make([]cluster.GroupSpec, len(ids))
	for i, n := range nodes {
		threads := int(cpusPerWorker)
		if threads == 0 {
			threads = int(n.Total.CPU) / len(local[i])
		}
		s := base
		// Each group's own: a local agent starts from its spec's
		// environment while the others start from theirs.
		s.Env = slices.Clone(base.Env)
		s.Layout = layout
		s.Layout.ThreadsPerWorker = max(threads, 1)
		s.NodeRank = i
		s.Workers = local[i]
		specs[i] = s
	}
	return specs
}

// startGroups starts every node's group at once (specs[i] on agents[i]).
// When all started, it returns them and release, which ends the groups'
// contexts: call it once they are done. When one could not start, its
// error cuts short the starts still under way, every group that started is
// stopped and drained, and errs says why each node did not start: nil for
// those that started and for those whose start only a peer's failure cut
// short (a cut start counts as stopped unless it failed in a way that ends
// the job, or its node was lost).
func startGroups(ctx context.Context, agents []cluster.NodeAgent, specs []cluster.GroupSpec, ship cluster.Shipment) (groups []cluster.GroupRunner, release func(), errs []error) {
	groups = make([]cluster.GroupRunner, len(agents))
	errs = make([]error, len(agents))
	// A group lives as long as the context it starts with: its own, which
	// the first failure to start cancels while it is still starting.
	cancels := make([]context.CancelFunc, len(agents))
	release = func() {
		for _, cancel := range cancels {
			cancel()
		}
	}
	eg, starting := errgroup.WithContext(ctx)
	for i, a := range agents {
		life, cancel := context.WithCancel(ctx)
		cancels[i] = cancel
		eg.Go(func() error {
			detach := afterFunc(starting, cancel)
			g, err := a.StartGroup(life, specs[i], ship)
			detach()
			cut := starting.Err() != nil
			groups[i], errs[i] = g, err
			if err != nil && cut && !errors.Is(err, cluster.ErrNodeLost) && !fatalAtStart(ctx, err) {
				errs[i] = nil
			}
			return err
		})
	}
	if eg.Wait() == nil {
		return groups, release, nil
	}
	for _, g := range groups {
		if g != nil {
			g.Stop()
			for range g.Events() {
			}
		}
	}
	release()
	return nil, nil, errs
}

// lostBeforeStart is an attempt that ended before any worker started
// because node was lost: its ranks lost, the others stopped, so the job
// may restart.
func lostBeforeStart(plan sched.Plan, node, why string) []WorkerExit {
	now := time.Now()
	exits := make([]WorkerExit, len(plan.Assignments))
	for rank, a := range plan.Assignments {
		exits[rank] = WorkerExit{Rank: rank, Node: a.NodeID, Exit: launcher.Exit{Time: now, Stopped: true}}
		if a.NodeID == node {
			exits[rank].Exit = launcher.Exit{Code: -1, Time: now, Lost: why}
			exits[rank].FailedAt = now
		}
	}
	return exits
}

// failedAtStart turns the start of an attempt that failed on some nodes
// into worker exits: those nodes' ranks failed (Lost says why), the others
// stopped, so the job may restart within MaxFailures as if workers had
// failed: a node lost, a cgroup that could not be made, a spawn that
// failed, a node out of disk for the working directory are all of one
// node at one moment, and the next attempt may be placed elsewhere or find
// the node recovered. fatal is the error that ends the job instead, when
// one of them will fail the same way every time (fatalAtStart).
func failedAtStart(ctx context.Context, nodes []string, specs []cluster.GroupSpec, errs []error) (exits []WorkerExit, fatal error) {
	now := time.Now()
	for i, spec := range specs {
		err := errs[i]
		if err != nil && !errors.Is(err, cluster.ErrNodeLost) && fatalAtStart(ctx, err) {
			return nil, err
		}
		for _, w := range spec.Workers {
			x := WorkerExit{Rank: spec.Layout.Rank(spec.NodeRank, w.LocalRank), Node: nodes[i], Exit: launcher.Exit{Time: now, Stopped: true}}
			if err != nil {
				why := err.Error()
				if !errors.Is(err, cluster.ErrNodeLost) {
					why = couldNotStart(nodes[i], err)
				}
				x.Exit = launcher.Exit{Code: -1, Time: now, Lost: why}
				x.FailedAt, x.Tail = now, []string{why}
			}
			exits = append(exits, x)
		}
	}
	return exits, nil
}

// fatalAtStart reports whether err, which stopped workers from starting,
// must end the job rather than spend a restart: the input is at fault
// (ErrInvalidConfig), strict isolation that the node cannot give
// (ErrNotIsolated: placed anew, the job lands on the same kind of node),
// a program that embeds rtrain without its reaper (launcher.ErrNoReaper),
// or the job's own end. A remote node's error arrives as its message
// alone, so a python without torch there costs one failure per attempt
// and ends the job with MaxFailures, its message the root cause.
func fatalAtStart(ctx context.Context, err error) bool {
	return errors.Is(err, ErrInvalidConfig) || errors.Is(err, cluster.ErrNotIsolated) ||
		errors.Is(err, launcher.ErrNoReaper) || ctx.Err() != nil
}

// couldNotStart is the failure of node's workers that did not start.
func couldNotStart(node string, err error) string {
	return fmt.Sprintf("could not start on node %s: %v", node, err)
}
