package trainer

import (
	"fmt"
	"time"
)

// hangWatchdog stops a job that no longer reports (Config.HangTimeout). It
// is armed, as hangWatch judges, once every worker is up, and re-armed by
// every report; when it fires, follow asks the workers for their stacks,
// and when it fires again stackGrace later, follow stops them. Its clock is
// follow's, so that a rank's waits are measured on one machine.
type hangWatchdog struct {
	judge *hangWatch
	clock clock
	timer clockTimer // made when first armed
	// c is the timer's channel while armed, else nil; armed is the wait
	// it was last armed with.
	c     <-chan time.Time
	armed time.Duration
	// why is set, and at with it, once the watchdog has fired: the cause
	// of every worker it stops.
	why string
	at  time.Time
}

// hangAction is what follow does when the watchdog fires.
type hangAction int

const (
	// hangDumpStacks: ask every worker for its Python stacks.
	hangDumpStacks hangAction = iota + 1
	// hangStop: the stacks have had stackGrace; stop the workers.
	hangStop
)

// stackGrace is how long the workers of a hung job have to print their
// stacks before they are stopped.
const stackGrace = 3 * time.Second

func newHangWatchdog(timeout time.Duration, c clock) *hangWatchdog {
	return &hangWatchdog{judge: newHangWatch(timeout), clock: c}
}

// C receives when the watchdog fires; nil while it is not armed.
func (d *hangWatchdog) C() <-chan time.Time { return d.c }

// started notes that rank started.
func (d *hangWatchdog) started(rank int) { d.judge.started(rank, d.clock.Now()) }

// allUp notes that every worker has started.
func (d *hangWatchdog) allUp() { d.arm(d.judge.allUp()) }

// report notes rank's report.
func (d *hangWatchdog) report(rank int) { d.arm(d.judge.report(rank, d.clock.Now())) }

// arm (re)starts the wait for a report; 0 leaves the watchdog as it is,
// and once it has fired no report puts it back.
func (d *hangWatchdog) arm(wait time.Duration) {
	if wait <= 0 || d.why != "" {
		return
	}
	d.reset(wait)
	d.armed = wait
}

func (d *hangWatchdog) reset(wait time.Duration) {
	if d.timer == nil {
		d.timer = d.clock.NewTimer(wait)
	} else {
		d.timer.Reset(wait)
	}
	d.c = d.timer.C()
}

// fire is called when C has received: the first time the job is hung and
// the workers are asked for their stacks, the second time they are
// stopped, and the watchdog is done.
func (d *hangWatchdog) fire() hangAction {
	if d.why != "" {
		d.c = nil
		return hangStop
	}
	d.why, d.at = d.judge.hung(d.armed), d.clock.Now()
	d.reset(stackGrace)
	return hangDumpStacks
}

// hung is the cause of the workers the watchdog stopped and when it
// judged them hung; "" before it has fired.
func (d *hangWatchdog) hung() (string, time.Time) { return d.why, d.at }

// stop releases the timer.
func (d *hangWatchdog) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
}

// hangWatch judges when a job that no longer reports is hung
// (Config.HangTimeout): after each event, how long it may go on without a
// report. The watchdog keeps the timer and the clock.
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

// clock is where the hang watchdog reads the time and gets its timer:
// the system's, or in tests one moved by hand.
type clock interface {
	Now() time.Time
	NewTimer(d time.Duration) clockTimer
}

// clockTimer is the part of a *time.Timer the watchdog uses.
type clockTimer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

type systemClock struct{}

func (systemClock) Now() time.Time                      { return time.Now() }
func (systemClock) NewTimer(d time.Duration) clockTimer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (s systemTimer) C() <-chan time.Time   { return s.t.C }
func (s systemTimer) Reset(d time.Duration) { s.t.Reset(d) }
func (s systemTimer) Stop()                 { s.t.Stop() }
