package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/pyshim"
)

// follow turns the groups' events into the job's until every group is done.
// The first worker to fail, a checkpoint that cannot be stored, ctx ending,
// or the hang watchdog stops every group. It returns how each worker ended
// and the checkpoint error when that came before any worker failed.
func (j *job) follow(ctx context.Context, groups []cluster.GroupRunner, world int, ckpts *committer, scaleUp func() bool) ([]WorkerExit, error) {
	f := &follower{j: j, groups: groups, world: world, ckpts: ckpts, pids: map[int]int{},
		dog: newHangWatchdog(j.cfg.HangTimeout, systemClock{})}
	defer f.dog.stop()
	// Stack dumps go to every node at once; they are over before follow
	// returns.
	var dumps sync.WaitGroup
	defer dumps.Wait()
	stopOnDone := afterFunc(ctx, func() {
		j.log.Debug("context done; stopping workers")
		f.stopAll()
	})
	defer stopOnDone()

	events := merge(groups)
	failedCkpt := ckpts.failed
	committed := ckpts.committed
	if scaleUp == nil {
		committed = nil
	}
	for {
		select {
		case <-f.dog.C():
			switch f.dog.fire() {
			case hangDumpStacks:
				j.log.Debug("hang; asking for python stacks", "timeout", f.dog.armed)
				for _, g := range groups {
					dumps.Go(g.DumpStacks)
				}
			case hangStop:
				f.stopAll()
			}
		case <-committed:
			if scaleUp() {
				committed = nil
				j.rescale = true
				j.log.Debug("room for more workers; restarting at this checkpoint")
				f.stopAll()
			}
		case err := <-failedCkpt:
			failedCkpt = nil
			if !f.workerFailed {
				f.ckptErr = err
				j.log.Debug("checkpoint failed; stopping workers", "err", err)
				f.stopAll()
			}
		case e, ok := <-events:
			if !ok {
				sort.Slice(f.exits, func(a, b int) bool { return f.exits[a].Rank < f.exits[b].Rank })
				return f.exits, f.ckptErr
			}
			f.handle(e)
		}
	}
}

// merge forwards every group's events to one channel, closed once all
// of theirs are.
func merge(groups []cluster.GroupRunner) <-chan cluster.Event {
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
	return events
}

// follower is follow's state: what the attempt's workers have done so far.
type follower struct {
	j      *job
	groups []cluster.GroupRunner
	world  int
	ckpts  *committer
	dog    *hangWatchdog

	pids    map[int]int // by rank
	started int
	exits   []WorkerExit
	// ckptErr is the checkpoint failure that stopped the workers, unless
	// a worker had failed first (workerFailed).
	ckptErr      error
	workerFailed bool
}

// stopAll stops every group. It may be called from any goroutine, and
// more than once.
func (f *follower) stopAll() {
	for _, g := range f.groups {
		g.Stop()
	}
}

// handle turns one of the groups' events into the job's.
func (f *follower) handle(e cluster.Event) {
	j := f.j
	switch e.Kind {
	case cluster.WorkerStarted:
		f.pids[e.Rank] = e.PID
		f.dog.started(e.Rank)
		f.emit(e, Event{Type: EventWorkerStarted, Time: e.Time, Rank: e.Rank, Node: e.NodeID, PID: e.PID})
		if f.started++; f.started == f.world {
			if e.Replayed {
				j.res.State = StateRunning
			} else {
				j.setState(StateRunning, "")
			}
			f.dog.allUp()
		}
	case cluster.WorkerLog:
		f.emit(e, Event{Type: EventLog, Time: e.Time, Rank: e.Rank, Node: e.NodeID, Stream: e.Stream, Line: e.Line})
	case cluster.WorkerReport:
		f.dog.report(e.Rank)
		if e.Rank == 0 {
			j.res.Metrics = e.Report.Metrics
			j.res.Reports++
			j.keepHistory(e.Report.Metrics)
		}
		f.emit(e, Event{Type: EventReport, Time: e.Time, Rank: e.Rank, Node: e.NodeID, Metrics: e.Report.Metrics, WithCheckpoint: e.Staged != "" || e.StagedReleased})
		f.ckpts.report(e)
	case cluster.CheckpointLost:
		if f.ckptErr == nil && !f.workerFailed {
			f.ckptErr = &CheckpointError{Index: f.ckpts.next, Err: errors.New(e.Line)}
			f.stopAll()
		}
	case cluster.NodeWarning:
		f.emit(e, Event{Type: EventWarning, Time: e.Time, Node: e.NodeID, Message: e.Line + "; running without (--isolation=strict would refuse)"})
	case cluster.WorkerExited:
		hung, hungAt := f.dog.hung()
		w := exitOf(e, f.pids[e.Rank], hung, hungAt)
		if w.TeardownCrash != "" {
			f.emit(e, Event{Type: EventWarning, Time: e.Time, Rank: e.Rank, Node: e.NodeID,
				Message: fmt.Sprintf("rank %d finished, then %s; its work was done, so it counts as a success", e.Rank, w.TeardownCrash)})
		}
		f.exits = append(f.exits, w)
		if !w.Success() && !w.Stopped {
			if f.ckptErr == nil {
				f.workerFailed = true
			}
			f.stopAll()
		}
		f.emit(e, Event{Type: EventWorkerExited, Time: e.Time, Rank: e.Rank, Node: e.NodeID, PID: w.PID, Exit: &w})
	}
}

// emit passes on ev, made of the group event e, unless an earlier head
// process passed it on already (e.Replayed): then it only rebuilt the
// attempt's state. ev carries e's place for the head to keep.
func (f *follower) emit(e cluster.Event, ev Event) {
	if e.Replayed {
		return
	}
	ev.GroupSeq = e.Seq
	f.j.emit(ev)
}

// keepHistory adds rank 0's metrics m to the result's history while it is
// within its bounds.
func (j *job) keepHistory(m pyshim.Metrics) {
	if len(j.res.History) >= MaxHistory {
		return
	}
	b, err := json.Marshal(m)
	if err != nil || j.historyBytes+len(b) > MaxHistoryBytes {
		return
	}
	j.historyBytes += len(b)
	j.res.History = append(j.res.History, m)
}
