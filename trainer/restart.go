package trainer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

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
	if latest == nil || (j.restore != nil && j.restore.URI == latest.URI) {
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

// hangWatch judges when a job that no longer reports is hung
// (Config.HangTimeout): after each event, how long it may go on without a
// report. follow keeps the timer; the clock is follow's, so that a rank's
// waits are measured on one machine.
type hangWatch struct {
	timeout time.Duration // Config.HangTimeout
	up      bool          // every worker has started
	// since is each rank's start, then its last report; reports counts
	// them; longest is the longest wait a rank has had for its next.
	since   map[int]time.Time
	reports map[int]int
	longest time.Duration
	// paced is set once a rank has reported twice: the default watchdog
	// arms only then, when it has seen a wait between reports to judge by.
	paced bool
}

func newHangWatch(timeout time.Duration) *hangWatch {
	return &hangWatch{timeout: timeout, since: map[int]time.Time{}, reports: map[int]int{}}
}

// started notes that rank started at t.
func (w *hangWatch) started(rank int, t time.Time) { w.since[rank] = t }

// allUp notes that every worker has started. It returns the wait to arm
// the watchdog with, 0 to leave it unarmed.
func (w *hangWatch) allUp() time.Duration {
	w.up = true
	return w.wait()
}

// report notes rank's report at t and returns the wait to arm the
// watchdog with from now, 0 to leave it as it is.
func (w *hangWatch) report(rank int, t time.Time) time.Duration {
	if since, ok := w.since[rank]; ok {
		w.longest = max(w.longest, t.Sub(since))
	}
	w.since[rank] = t
	if w.reports[rank]++; w.reports[rank] >= 2 {
		w.paced = true
	}
	return w.wait()
}

func (w *hangWatch) wait() time.Duration {
	switch {
	case !w.up || w.timeout < 0:
		return 0
	case w.timeout > 0:
		return w.timeout
	case !w.paced:
		return 0
	}
	return max(DefaultHangTimeout, DefaultHangPace*w.longest)
}

// hung is the cause of workers stopped after d without a report.
func (w *hangWatch) hung(d time.Duration) string {
	if w.timeout > 0 {
		return fmt.Sprintf("hung: no report() from any worker for %s", w.timeout)
	}
	return fmt.Sprintf("hung: no report() from any worker for %s (the default hang timeout: %s, or %dx the longest wait between a rank's reports; --hang-timeout sets another, -1s none)",
		d.Round(time.Second), DefaultHangTimeout, DefaultHangPace)
}
