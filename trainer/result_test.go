package trainer

import (
	"syscall"
	"testing"
	"time"

	"github.com/rtrain/rtrain/launcher"
)

func TestCauseLine(t *testing.T) {
	tb := func(lines ...string) []string {
		return append([]string{"Traceback (most recent call last):", `  File "train.py", line 3, in <module>`}, lines...)
	}
	tests := []struct {
		name string
		tail []string
		exit launcher.Exit
		want string
	}{
		{"plain exception", tb("ValueError: boom"), launcher.Exit{Code: 1}, "ValueError: boom"},
		{"dotted name", tb("torch.distributed.DistBackendError: NCCL timeout"), launcher.Exit{Code: 1}, "torch.distributed.DistBackendError: NCCL timeout"},
		{"no message", tb("KeyboardInterrupt"), launcher.Exit{Code: 1}, "KeyboardInterrupt"},
		{"log after the traceback", append(tb("RuntimeError: x"), "[W socket.cpp] warning"), launcher.Exit{Code: 1}, "RuntimeError: x"},
		{"no traceback", []string{"Error: config missing", "Segmentation fault"}, launcher.Exit{Code: -1, Signal: syscall.SIGSEGV}, launcher.Exit{Code: -1, Signal: syscall.SIGSEGV}.String()},
		{"log line that looks like one", []string{"MyError: not from a traceback"}, launcher.Exit{Code: 3}, launcher.Exit{Code: 3}.String()},
		{"after a child's OOM kill", tb("RuntimeError: DataLoader worker (pid 7) is killed by signal: Killed."), launcher.Exit{Code: 1, OOMKills: 1},
			"RuntimeError: DataLoader worker (pid 7) is killed by signal: Killed. (after 1 of its processes was killed: out of memory)"},
		{"after children's OOM kills", tb("RuntimeError: x"), launcher.Exit{Code: 1, OOMKills: 2}, "RuntimeError: x (after 2 of its processes were killed: out of memory)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := WorkerExit{Exit: tt.exit, Tail: tt.tail}
			if got := w.Cause(); got != tt.want {
				t.Errorf("Cause() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRootCauseIsTheFirstToRaise(t *testing.T) {
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	exits := []WorkerExit{
		{Rank: 0, Exit: launcher.Exit{Code: -1, Signal: syscall.SIGTERM, Stopped: true, Time: at(300 * time.Millisecond)}},
		// Rank 1 raised first but exited last: its peers saw its socket close.
		{Rank: 1, Exit: launcher.Exit{Code: 1, Time: at(250 * time.Millisecond)}, FailedAt: at(10 * time.Millisecond)},
		{Rank: 2, Exit: launcher.Exit{Code: 1, Time: at(100 * time.Millisecond)}, FailedAt: at(90 * time.Millisecond)},
		{Rank: 3, Exit: launcher.Exit{Code: 0, Time: at(50 * time.Millisecond)}},
	}
	jerr := newJobError(exits)
	if jerr == nil {
		t.Fatal("no JobError for a failed job")
	}
	if jerr.Cause.Rank != 1 {
		t.Errorf("cause is rank %d, want rank 1", jerr.Cause.Rank)
	}
	if len(jerr.Failed) != 1 || jerr.Failed[0].Rank != 2 || len(jerr.Stopped) != 1 || jerr.Stopped[0].Rank != 0 {
		t.Errorf("failed %v, stopped %v; want [2] and [0]", jerr.Failed, jerr.Stopped)
	}
	if newJobError(exits[3:]) != nil {
		t.Error("a JobError for a job whose workers all succeeded")
	}
}
