package launcher

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/testutil"
)

// A worker runs while its lease is renewed, and is killed, with what it
// spawned, once the renewals stop.
func TestLeaseLapseFencesTheWorker(t *testing.T) {
	lease := NewLease(filepath.Join(t.TempDir(), "lease"))
	require.NoError(t, lease.Renew(LeaseNow(), 500*time.Millisecond))
	marker := testutil.Marker(t)
	out := newLines()
	p, err := Start(Spec{Path: os.Args[0], Env: append(os.Environ(), "LAUNCHER_CHILD=spawn-setsid", marker), Stdout: out.writer(), Lease: lease.Path()})
	require.NoError(t, err)
	t.Cleanup(func() { p.Stop(t.Context(), 0) })
	waitLine(t, out, "ready")

	renewedUntil := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(renewedUntil) {
		require.NoError(t, lease.Renew(LeaseNow(), 500*time.Millisecond))
		select {
		case <-p.Done():
			t.Fatalf("the worker ended while its lease was renewed: %v", p.Exit())
		case <-time.After(100 * time.Millisecond):
		}
	}
	lapses := time.Now().Add(500 * time.Millisecond)
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the worker outlived its lease")
	}
	late := time.Since(lapses)
	x := p.Exit()
	assert.True(t, x.Fenced, "exit %+v", x)
	assert.Equal(t, syscall.SIGKILL, x.Signal)
	assert.Contains(t, x.String(), "fenced")
	assert.Less(t, late, LeaseSlack, "killed %s after the deadline; the head waits only LeaseSlack", late)
	testutil.NoProcesses(t, marker, 2*time.Second)
}

// The point of the lease: a launcher frozen by SIGSTOP cannot stop its
// worker, and the reaper does it without it.
func TestLeaseFencesTheWorkerOfAFrozenLauncher(t *testing.T) {
	lease := NewLease(filepath.Join(t.TempDir(), "lease"))
	require.NoError(t, lease.Renew(LeaseNow(), time.Hour))
	marker := testutil.Marker(t)
	out := newLines()
	spec := Spec{Path: os.Args[0], Env: append(os.Environ(), "LAUNCHER_CHILD=launch-leased", "LAUNCHER_LEASE="+lease.Path(), marker), Stdout: out.writer()}
	launcherProc, err := Start(spec)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = syscall.Kill(launcherProc.Pid(), syscall.SIGCONT)
		launcherProc.Stop(t.Context(), 0)
	})
	waitLine(t, out, "ready")
	require.NoError(t, syscall.Kill(launcherProc.Pid(), syscall.SIGSTOP))
	require.NoError(t, lease.Renew(LeaseNow(), 300*time.Millisecond))

	deadline := time.Now().Add(5 * time.Second)
	for {
		// What is left besides the frozen launcher and the reaper above it.
		left := slices.DeleteFunc(testutil.Processes(marker), func(pid int) bool { return pid == launcherProc.Pid() || pid == launcherProc.pgid() })
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			st, _ := os.ReadFile("/proc/" + strconv.Itoa(left[0]) + "/stat")
			t.Fatalf("the frozen launcher's worker tree outlived the lease: %v (%s)", left, strings.TrimSpace(string(st)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
