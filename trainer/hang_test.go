package trainer

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is moved by hand; its timer records the waits it is armed with
// and fires only when the test says.
type fakeClock struct {
	now   time.Time
	timer *fakeTimer
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) NewTimer(d time.Duration) clockTimer {
	c.timer = &fakeTimer{c: make(chan time.Time, 1), waits: []time.Duration{d}}
	return c.timer
}

type fakeTimer struct {
	c       chan time.Time
	waits   []time.Duration
	stopped bool
}

func (t *fakeTimer) C() <-chan time.Time   { return t.c }
func (t *fakeTimer) Reset(d time.Duration) { t.waits = append(t.waits, d) }
func (t *fakeTimer) Stop()                 { t.stopped = true }

// The watchdog as follow drives it: armed once every worker is up, re-armed
// by each report, then on firing it asks for stacks, and stackGrace later
// stops the workers; the hang is the cause of every worker it stopped.
func TestHangWatchdog(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		at    time.Duration // the clock, since t0
		do    string        // "start N", "up", "report N", "fire"
		armed time.Duration // the wait the timer was last given, 0: no timer yet
		act   hangAction    // for "fire"
		c     bool          // C is not nil after the step
	}
	tests := []struct {
		name    string
		timeout time.Duration
		steps   []step
		hung    string // the cause at the end
		hungAt  time.Duration
	}{
		{"explicit timeout", 10 * time.Second, []step{
			{0, "start 0", 0, 0, false},
			{0, "start 1", 0, 0, false},
			{time.Second, "report 0", 0, 0, false},
			{2 * time.Second, "up", 10 * time.Second, 0, true},
			{3 * time.Second, "report 1", 10 * time.Second, 0, true},
			{13 * time.Second, "fire", stackGrace, hangDumpStacks, true},
			{14 * time.Second, "report 0", stackGrace, 0, true}, // a report after the hang changes nothing
			{16 * time.Second, "fire", stackGrace, hangStop, false},
		}, "hung: no report() from any worker for 10s", 13 * time.Second},
		{"off", -1, []step{
			{0, "start 0", 0, 0, false},
			{0, "up", 0, 0, false},
			{time.Hour, "report 0", 0, 0, false},
			{2 * time.Hour, "report 0", 0, 0, false},
		}, "", 0},
		{"default: armed once a rank has shown its pace", 0, []step{
			{0, "start 0", 0, 0, false},
			{0, "up", 0, 0, false},
			{time.Hour, "report 0", 0, 0, false},
			{2 * time.Hour, "report 0", 4 * time.Hour, 0, true},
			{6 * time.Hour, "fire", stackGrace, hangDumpStacks, true},
			{6*time.Hour + stackGrace, "fire", stackGrace, hangStop, false},
		}, "hung: no report() from any worker for 4h0m0s (the default hang timeout: 30m0s, or 4x the longest wait between a rank's reports; --hang-timeout sets another, -1s none)", 6 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{now: t0}
			d := newHangWatchdog(tt.timeout, clk)
			for i, s := range tt.steps {
				clk.now = t0.Add(s.at)
				var rank int
				switch {
				case s.do == "up":
					d.allUp()
				case s.do == "fire":
					require.NotNil(t, d.C(), "step %d: fired while not armed", i)
					assert.Equal(t, s.act, d.fire(), "step %d", i)
				case scan(s.do, "start %d", &rank):
					d.started(rank)
				case scan(s.do, "report %d", &rank):
					d.report(rank)
				default:
					t.Fatalf("step %d: %q", i, s.do)
				}
				var armed time.Duration
				if clk.timer != nil {
					armed = clk.timer.waits[len(clk.timer.waits)-1]
				}
				assert.Equal(t, s.armed, armed, "step %d (%s): armed", i, s.do)
				assert.Equal(t, s.c, d.C() != nil, "step %d (%s): C", i, s.do)
			}
			why, at := d.hung()
			assert.Equal(t, tt.hung, why)
			if tt.hung != "" {
				assert.Equal(t, t0.Add(tt.hungAt), at)
			}
			d.stop()
			if clk.timer != nil {
				assert.True(t, clk.timer.stopped, "stop releases the timer")
			}
		})
	}
}

// The system clock's timer fires, and Reset re-arms it.
func TestSystemClock(t *testing.T) {
	d := newHangWatchdog(time.Millisecond, systemClock{})
	defer d.stop()
	d.started(0)
	d.allUp()
	<-d.C()
	require.Equal(t, hangDumpStacks, d.fire())
	d.timer.Reset(time.Millisecond) // not stackGrace: the test would wait for it
	<-d.C()
	assert.Equal(t, hangStop, d.fire())
	assert.Nil(t, d.C())
}

func scan(s, format string, n *int) bool {
	_, err := fmt.Sscanf(s, format, n)
	return err == nil
}
