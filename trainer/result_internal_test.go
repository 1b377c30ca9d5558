package trainer

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
