package trainer

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/launcher"
)

func TestJobErrorNamesTheFirstFailureThatIsNotAnEcho(t *testing.T) {
	t0 := time.Now()
	raised := func(rank int, at time.Duration, exception string) WorkerExit {
		return WorkerExit{Rank: rank, Exit: launcher.Exit{Code: 1}, FailedAt: t0.Add(at),
			Tail: []string{"Traceback (most recent call last):", `  File "train.py", line 1`, exception}}
	}
	killed := func(rank int, at time.Duration) WorkerExit {
		return WorkerExit{Rank: rank, Exit: launcher.Exit{Code: -1, Signal: syscall.SIGKILL}, FailedAt: t0.Add(at)}
	}
	stopped := WorkerExit{Rank: 3, Exit: launcher.Exit{Code: -1, Signal: syscall.SIGTERM, Stopped: true}}
	closed := "RuntimeError: [./gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:31914"
	for _, tc := range []struct {
		name   string
		exits  []WorkerExit
		cause  int
		failed []int
	}{
		{"the first to raise", []WorkerExit{raised(0, 2*time.Millisecond, "KeyError: 'x'"), raised(1, time.Millisecond, "ValueError: boom"), stopped}, 1, []int{0}},
		{"a SIGKILL seen after its peer's echo", []WorkerExit{raised(0, time.Millisecond, closed), killed(1, 5*time.Millisecond), stopped}, 1, []int{0}},
		{"a raise seen after its peer's echo", []WorkerExit{raised(0, time.Millisecond, closed), raised(2, 9*time.Millisecond, "ValueError: boom"), stopped}, 2, []int{0}},
		{"a raise seen after the hang", []WorkerExit{
			{Rank: 0, Exit: launcher.Exit{Code: -1, Signal: syscall.SIGTERM, Stopped: true}, FailedAt: t0, Hung: "hung"},
			raised(1, time.Second, "ValueError: boom"), stopped}, 1, []int{0}},
		{"only echoes: the first", []WorkerExit{raised(2, 3*time.Millisecond, closed), raised(0, time.Millisecond, "RuntimeError: Connection reset by peer"), stopped}, 0, []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jerr := newJobError(tc.exits)
			require.NotNil(t, jerr)
			assert.Equal(t, tc.cause, jerr.Cause.Rank)
			var failed []int
			for _, w := range jerr.Failed {
				failed = append(failed, w.Rank)
			}
			assert.Equal(t, tc.failed, failed)
			require.Len(t, jerr.Stopped, 1)
			assert.Equal(t, 3, jerr.Stopped[0].Rank)
		})
	}
	assert.Nil(t, newJobError([]WorkerExit{stopped}), "a job rtrain stopped has no failure")
}

// Exits as the groups report them, judged one by one and then together:
// which rank is the root cause, which peers failed after it, which were
// stopped. No processes: the events are what a group would send.
func TestRootCauseOfAnAttempt(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	exited := func(rank, code int, exit time.Duration) cluster.Event {
		return cluster.Event{Kind: cluster.WorkerExited, Rank: rank, NodeID: "n", Exit: launcher.Exit{Code: code, Time: at(exit)}}
	}
	raise := func(e cluster.Event, raised time.Duration, exception string) cluster.Event {
		e.RaisedAt = at(raised)
		e.Tail = []string{"Traceback (most recent call last):", `  File "train.py", line 1`, exception}
		return e
	}
	signalled := func(rank int, sig syscall.Signal, exit time.Duration) cluster.Event {
		return cluster.Event{Kind: cluster.WorkerExited, Rank: rank, NodeID: "n", Exit: launcher.Exit{Code: -1, Signal: sig, Time: at(exit)}}
	}
	stopped := func(rank int, exit time.Duration) cluster.Event {
		e := signalled(rank, syscall.SIGTERM, exit)
		e.Exit.Stopped = true
		return e
	}
	beforeStop := func(e cluster.Event) cluster.Event { e.RaisedBeforeStop = true; return e }
	noted := func(e cluster.Event, raised time.Duration, exception string) cluster.Event {
		e.RaisedAt, e.Exception = at(raised), exception
		return e
	}
	teardown := signalled(2, syscall.SIGABRT, 40*time.Millisecond)
	teardown.FinishedAt, teardown.AfterFinish = at(30*time.Millisecond), []string{"terminate called without an active exception", ""}
	closed := "RuntimeError: [../gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.0.0.2]:4242"

	tests := []struct {
		name     string
		hung     string
		events   []cluster.Event
		cause    int // -1: no failure
		failedAt time.Time
		failed   []int
		stopped  []int
	}{
		{"the first to raise, though it exits last", "", []cluster.Event{
			raise(exited(0, 1, 250*time.Millisecond), 10*time.Millisecond, "ValueError: boom"),
			raise(exited(1, 1, 100*time.Millisecond), 90*time.Millisecond, "KeyError: 'x'"),
			stopped(2, 300*time.Millisecond)}, 0, at(10 * time.Millisecond), []int{1}, []int{2}},
		{"raised before the stop that ended its exit", "", []cluster.Event{
			exited(0, 1, 20*time.Millisecond),
			beforeStop(raise(stopped(1, 30*time.Millisecond), 5*time.Millisecond, "ValueError: boom"))}, 1, at(5 * time.Millisecond), []int{0}, nil},
		{"raised only as the stop came", "", []cluster.Event{
			exited(0, 1, 20*time.Millisecond),
			raise(stopped(1, 30*time.Millisecond), 25*time.Millisecond, "KeyboardInterrupt")}, 0, at(20 * time.Millisecond), nil, []int{1}},
		{"a SIGKILL seen after its peer's echo", "", []cluster.Event{
			raise(exited(0, 1, 2*time.Millisecond), time.Millisecond, closed),
			signalled(1, syscall.SIGKILL, 5*time.Millisecond)}, 1, at(5 * time.Millisecond), []int{0}, nil},
		// A loaded machine: the peer raised on the closed connection, was
		// stopped before its traceback reached stderr, and only its exit
		// note says what it raised.
		{"a SIGKILL seen after its peer's echo, known from its note", "", []cluster.Event{
			noted(beforeStop(stopped(0, 8*time.Millisecond)), time.Millisecond, closed),
			signalled(1, syscall.SIGKILL, 5*time.Millisecond)}, 1, at(5 * time.Millisecond), []int{0}, nil},
		{"a crash in Python's teardown is a success", "", []cluster.Event{
			exited(0, 0, 10*time.Millisecond), exited(1, 0, 20*time.Millisecond), teardown}, -1, time.Time{}, nil, nil},
		{"hung: every rank at once, rank order names the cause", "hung", []cluster.Event{
			stopped(1, time.Hour), stopped(0, time.Hour)}, 0, at(time.Minute), []int{1}, nil},
		{"hung waiting for the rank that raised", "hung", []cluster.Event{
			stopped(0, time.Hour),
			beforeStop(raise(stopped(1, time.Hour), 50*time.Second, "ValueError: boom"))}, 1, at(50 * time.Second), []int{0}, nil},
		{"stopped by rtrain, no failure", "", []cluster.Event{
			stopped(0, time.Second), stopped(1, time.Second)}, -1, time.Time{}, nil, []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var exits []WorkerExit
			for _, e := range tt.events {
				exits = append(exits, exitOf(e, 100+e.Rank, tt.hung, at(time.Minute)))
			}
			// follow hands them over by rank, whatever order they came in.
			slices.SortFunc(exits, func(a, b WorkerExit) int { return a.Rank - b.Rank })
			for _, w := range exits {
				assert.Equal(t, 100+w.Rank, w.PID)
				assert.Equal(t, "n", w.Node)
			}
			jerr := newJobError(exits)
			if tt.cause < 0 {
				assert.Nil(t, jerr)
				var stoppedRanks []int
				for _, w := range exits {
					if w.Stopped {
						stoppedRanks = append(stoppedRanks, w.Rank)
					}
				}
				assert.Equal(t, tt.stopped, stoppedRanks)
				return
			}
			require.NotNil(t, jerr)
			assert.Equal(t, tt.cause, jerr.Cause.Rank, "cause")
			assert.Equal(t, tt.failedAt, jerr.Cause.FailedAt, "cause failed at")
			assert.Equal(t, tt.failed, ranks(jerr.Failed), "failed after")
			assert.Equal(t, tt.stopped, ranks(jerr.Stopped), "stopped")
		})
	}
}

func TestTeardownCrash(t *testing.T) {
	e := cluster.Event{Kind: cluster.WorkerExited, Exit: launcher.Exit{Code: -1, Signal: syscall.SIGABRT}, FinishedAt: time.Now(),
		AfterFinish: []string{"terminate called without an active exception", "  "}}
	w := exitOf(e, 1, "hung", time.Now())
	assert.True(t, w.Success(), "its work was done")
	assert.Empty(t, w.Hung, "a finished rank did not hang")
	assert.Equal(t, "crashed as Python shut down: killed by signal 6 (aborted): terminate called without an active exception", w.TeardownCrash)
}

func ranks(ws []WorkerExit) []int {
	var out []int
	for _, w := range ws {
		out = append(out, w.Rank)
	}
	return out
}
