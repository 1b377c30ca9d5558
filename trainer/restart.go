package trainer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/launcher"
)

// noRestart says why the job ends with the latest failure rather than
// restart, "" when it restarts. A preempted worker (its node drained) does
// not spend the budget.
func (j *job) noRestart(jerr *JobError, failures []*JobError) string {
	exit := jerr.Cause.Exit
	if exit.Stopped && jerr.Cause.Hung == "" {
		// It raised, and rtrain's stop ended its exit: judge the exit it
		// was making, Python's for an uncaught exception.
		exit = launcher.Exit{Code: 1}
	}
	switch {
	case jerr.Cause.Preempted:
		return ""
	case j.cfg.MaxFailures == 0:
		return "no restarts allowed (--max-failures 0)"
	case exit.Lost != "":
		// It never exited with a code to judge: its node was lost, or it
		// could not start there. The exit codes say what a script meant.
	case slices.Contains(j.cfg.FatalExitCodes, exit.Code) && exit.Signal == 0:
		return fmt.Sprintf("exit code %d is fatal (--fatal-exit-codes)", exit.Code)
	case len(j.cfg.RetryExitCodes) > 0 && (exit.Signal != 0 || !slices.Contains(j.cfg.RetryExitCodes, exit.Code)):
		return fmt.Sprintf("%s is not one of --retry-exit-codes", exit)
	}
	if j.cfg.MaxFailures < 0 {
		return ""
	}
	spent := 0
	for _, f := range failures {
		if !f.Cause.Preempted {
			spent++
		}
	}
	if spent > j.cfg.MaxFailures {
		return fmt.Sprintf("%s, more than --max-failures %d", text.Plural(spent, "failure"), j.cfg.MaxFailures)
	}
	return ""
}

// restoreLatest points the next attempt at the run's latest committed
// checkpoint; with none, it starts from where the job started.
func (j *job) restoreLatest(ctx context.Context) error {
	latest, err := j.ckptRun.Latest(ctx)
	if err != nil {
		return fmt.Errorf("trainer: restart: %w", err)
	}
	if latest == nil || (restoreHere(j.restore) && j.restore.URI == latest.URI) {
		return nil
	}
	if err := j.download(ctx, j.ckptRun, *latest); err != nil {
		return fmt.Errorf("trainer: restart from %s: %w", latest.URI, err)
	}
	return nil
}

// restartMessage says why the job restarts and from where.
func (j *job) restartMessage(jerr *JobError, failures []*JobError) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s; restarting", jerr.Error())
	if j.restore != nil {
		fmt.Fprintf(&b, " from %s", j.restore.URI)
	} else {
		b.WriteString(" from the start (no checkpoint yet)")
	}
	switch {
	case jerr.Cause.Preempted:
		b.WriteString(" (preempted: not counted against --max-failures)")
	case j.cfg.MaxFailures < 0:
		fmt.Fprintf(&b, " (failure %d, no limit)", len(failures))
	default:
		spent := 0
		for _, f := range failures {
			if !f.Cause.Preempted {
				spent++
			}
		}
		fmt.Fprintf(&b, " (failure %d of --max-failures %d)", spent, j.cfg.MaxFailures)
	}
	return b.String()
}

// errRescale ends an attempt that stopped to restart with more workers.
var errRescale = errors.New("trainer: rescaling")

// size is how many workers the next attempt runs: Workers, or for an
// elastic job (MinWorkers set) the most that fit now, at least MinWorkers
// (the attempt waits for those).
func (j *job) size(s *sched.Scheduler, req sched.Request) int {
	lo := j.cfg.MinWorkers
	if lo == 0 || lo >= j.cfg.Workers {
		return j.cfg.Workers
	}
	nodes := s.Nodes()
	for n := j.cfg.Workers; n > lo; n-- {
		req.Count = n
		if _, err := sched.Place(nodes, req); err == nil {
			return n
		}
	}
	return lo
}

// scaleUp, for an elastic attempt running fewer than Workers, reports at
// each checkpoint whether the cluster now has room for more; nil when the
// attempt runs them all.
func (j *job) scaleUp(s *sched.Scheduler, plan sched.Plan) func() bool {
	running := len(plan.Assignments)
	strategy, _ := sched.ParseStrategy(j.cfg.Placement)
	// Under a strict strategy one more free bundle says nothing about
	// whether a bigger group would fit, and a restart that comes back the
	// same size would repeat at every checkpoint.
	if j.cfg.MinWorkers == 0 || running >= j.cfg.Workers || strategy == sched.StrictPack || strategy == sched.StrictSpread {
		return nil
	}
	return func() bool {
		req := sched.Request{Count: 1, Bundle: j.cfg.bundle()}
		_, err := sched.Place(s.Nodes(), req)
		return err == nil
	}
}

func (j *job) rescaleMessage(running int) string {
	from := "the start"
	if j.restore != nil {
		from = j.restore.URI
	}
	return fmt.Sprintf("room for more than %s: restarting from %s with as many as fit (up to %d)", text.Plural(running, "worker"), from, j.cfg.Workers)
}
