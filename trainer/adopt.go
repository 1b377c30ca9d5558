package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"time"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/pyshim"
)

// Adoption is what a head keeps of a job it runs for a client, once an
// attempt's workers have started, so that another head process (the head
// restarted, or a standby took over) can go on following the same workers
// (AdoptRemoteJob): their placement, their groups, and what the job had
// done before the attempt.
type Adoption struct {
	Config  Config
	Script  string
	ID      string
	Name    string
	Started time.Time
	// Attempt runs Request's workers as Plan places them, one group per
	// node in Plan.Nodes() order (Specs).
	Attempt int
	Request sched.Request
	Plan    sched.Plan
	Specs   []cluster.GroupSpec
	// Next is the index of the attempt's first checkpoint; Restore what
	// its workers started from.
	Next    int
	Restore *cluster.Restore
	// What the job had done before the attempt.
	Failures    []*JobError
	Restarts    int
	Reports     int
	Metrics     pyshim.Metrics
	History     []pyshim.Metrics
	ResumedFrom string
}

// OnAdoption has f called with the job's Adoption each time an attempt's
// workers have started, before their events are followed. Call it before
// Run.
func (r *RemoteJob) OnAdoption(f func(Adoption)) { r.j.onAdopt = f }

// AdoptRemoteJob is a job an earlier head process ran, whose workers may
// still be running: Run follows them again, rebuilding the attempt from
// the events their agents kept, and goes on as the job would have. Of each
// node's group, the events before replayed[node] were seen already: they
// rebuild the job's state and are not passed to onEvent again. A node that
// does not come back within wait, or no longer runs its group, fails the
// attempt as a lost node does: the job restarts within its budget.
func AdoptRemoteJob(a Adoption, wd cluster.Workdir, results string, be Backend, replayed map[string]int64, wait time.Duration, log *slog.Logger) (*RemoteJob, error) {
	cfg := a.Config
	cfg.Name = a.Name
	rj, err := NewRemoteJob(cfg, a.Script, wd, results, be, log)
	if err != nil {
		return nil, err
	}
	j := rj.j
	j.id, j.res.JobID = a.ID, a.ID
	j.adopted = &a
	j.replayed = maps.Clone(replayed)
	j.adoptWait = wait
	return rj, nil
}

// runAdopted follows the adopted attempt's groups to their end, as
// runAttempt follows the ones it starts.
func (j *job) runAdopted(ctx context.Context, be backend, a *Adoption) (*JobError, error) {
	ids := a.Plan.Nodes()
	if len(ids) != len(a.Specs) {
		return nil, fmt.Errorf("trainer: adopt job %s: %d groups for %d nodes", j.id, len(a.Specs), len(ids))
	}
	j.waitForNodes(ctx, be, ids)
	if err := be.Scheduler().Adopt(j.id, a.Request, a.Plan); err != nil {
		j.log.Warn("adopted job's placement not held", "err", err)
	} else {
		defer be.Scheduler().Release(j.id)
	}
	ckpts, err := j.newCommitter(ctx, a.Request.Count)
	if err != nil {
		return nil, err
	}
	// A checkpoint the earlier head was storing as it went is stored
	// again; one it committed is not.
	ms, err := j.ckptRun.List(ctx)
	if err != nil {
		ckpts.close()
		return nil, fmt.Errorf("trainer: %w", err)
	}
	ckpts.inStorage = map[int]bool{}
	for _, m := range ms {
		ckpts.inStorage[m.Index] = true
	}
	ckpts.next = a.Next
	groups := make([]cluster.GroupRunner, len(ids))
	for i, id := range ids {
		spec := a.Specs[i]
		spec.Stager = ckpts.stager
		groups[i] = j.attach(ctx, be, id, spec)
	}
	ckpts.groups = groups
	j.launched = true
	j.res.State = StateRunning
	exits, ckptErr := j.follow(ctx, groups, a.Request.Count, ckpts, nil)
	return j.attemptEnded(ctx, ckpts, exits, ckptErr)
}

// waitForNodes waits, up to the adoption's wait, for every node of ids
// to be in the cluster: their agents register again as they find the head.
func (j *job) waitForNodes(ctx context.Context, be backend, ids []string) {
	deadline := time.NewTimer(j.adoptWait)
	defer deadline.Stop()
	for {
		joined := be.Joined()
		missing := 0
		for _, id := range ids {
			if _, ok := be.Agent(id); !ok {
				missing++
			}
		}
		if missing == 0 || joined == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-joined:
		}
	}
}

// attach follows node id's group again; a node that is gone, or no
// longer runs the group, is a group whose workers are all lost.
func (j *job) attach(ctx context.Context, be backend, id string, spec cluster.GroupSpec) cluster.GroupRunner {
	a, ok := be.Agent(id)
	if !ok {
		return lostGroup(spec, id, fmt.Sprintf("node %s lost: it did not come back while the head restarted", id))
	}
	att, ok := a.(cluster.GroupAttacher)
	if !ok {
		return lostGroup(spec, id, fmt.Sprintf("node %s cannot be followed again", id))
	}
	g, err := att.AttachGroup(ctx, spec, 1, j.replayed[id])
	if errors.Is(err, cluster.ErrGroupGone) {
		return lostGroup(spec, id, fmt.Sprintf("the workers did not outlive the head's outage: %v", err))
	}
	if err != nil {
		return lostGroup(spec, id, fmt.Sprintf("node %s: %v", id, err))
	}
	return g
}

// lostGroup is a group whose every worker is lost, why.
func lostGroup(spec cluster.GroupSpec, node, why string) cluster.GroupRunner {
	ch := make(chan cluster.Event, len(spec.Workers))
	now := time.Now()
	for _, w := range spec.Workers {
		ch <- cluster.Event{Kind: cluster.WorkerExited, NodeID: node, Rank: spec.Layout.Rank(spec.NodeRank, w.LocalRank), Time: now,
			Exit: launcher.Exit{Code: -1, Time: now, Lost: why}, Tail: []string{why}}
	}
	close(ch)
	return gone(ch)
}

type gone <-chan cluster.Event

func (g gone) Events() <-chan cluster.Event { return g }
func (gone) Stop()                          {}
func (gone) DumpStacks()                    {}

// adoption is what another head needs to follow this attempt.
func (j *job) adoption(attempt int, plan sched.Plan, specs []cluster.GroupSpec, next int) Adoption {
	return Adoption{
		Config: j.cfg, Script: j.script, ID: j.id, Name: j.res.Name, Started: j.res.Started,
		Attempt: attempt, Request: j.req, Plan: plan, Specs: specs, Next: next, Restore: j.restore,
		Failures: j.failures, Restarts: j.res.Restarts, Reports: j.res.Reports, Metrics: j.res.Metrics,
		History: j.res.History, ResumedFrom: j.res.ResumedFrom,
	}
}

// restoreHere reports whether the checkpoint the workers start from is on
// this machine still: an adopted job's may be on the earlier head's.
func restoreHere(r *cluster.Restore) bool {
	if r == nil {
		return false
	}
	_, err := os.Stat(r.Dir)
	return err == nil
}
