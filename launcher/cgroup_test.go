package launcher

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/launcher/cgroup"
)

// testCgroup returns a group name for this test alone, below a top group
// that the test removes when it ends; a group left below it fails the test.
func testCgroup(t *testing.T) string {
	t.Helper()
	testutil.RequireCgroups(t)
	top := fmt.Sprintf("rtrain-launcher-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	t.Cleanup(func() {
		if left := testutil.CgroupsUnder(top); len(left) > 0 {
			t.Errorf("cgroups left behind: %v", left)
		}
		g, err := cgroup.Load(top)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Kill(ctx); err != nil {
			t.Error(err)
		}
		if err := g.Delete(); err != nil {
			t.Error(err)
		}
	})
	return top + "/job/rank-0"
}

// The worker is born in its cgroup and so is what it spawns, a grandchild
// in its own session included; the reaper stays outside. Stop kills them
// all and Reap removes the group.
func TestCgroupHoldsTheWorkerAndItsDescendants(t *testing.T) {
	name := testCgroup(t)
	marker := testutil.Marker(t)
	out := newLines()
	p, err := Start(Spec{Path: os.Args[0], Env: append(os.Environ(), "LAUNCHER_CHILD=spawn-setsid", marker),
		Stdout: out.writer(), Cgroup: &cgroup.Spec{Name: name, Pids: 100}})
	require.NoError(t, err)
	t.Cleanup(func() { p.Stop(context.Background(), 0); _ = p.Reap() })
	grandchild, err := strconv.Atoi(strings.TrimPrefix(waitLine(t, out, "ready"), "ready "))
	require.NoError(t, err)

	g, err := cgroup.Load(name)
	require.NoError(t, err)
	procs, err := g.Procs()
	require.NoError(t, err)
	want := []int{p.Pid(), grandchild}
	slices.Sort(want)
	assert.Equal(t, want, procs, "worker and grandchild, not the reaper (%d)", p.pgid())

	p.Stop(context.Background(), 100*time.Millisecond)
	require.NoError(t, p.Reap())
	testutil.NoProcesses(t, marker, 5*time.Second)
	assert.Empty(t, testutil.CgroupsUnder(strings.Split(name, "/")[0]), "Reap removed the group")
}

func TestOutOfMemoryIsReported(t *testing.T) {
	name := testCgroup(t)
	p, err := Start(Spec{Path: os.Args[0], Env: append(os.Environ(), "LAUNCHER_CHILD=oom", testutil.Marker(t)),
		Cgroup: &cgroup.Spec{Name: name, MemoryBytes: 64 << 20}})
	require.NoError(t, err)
	<-p.Done()
	x := p.Exit()
	require.NoError(t, p.Reap())
	assert.True(t, x.OutOfMemory(), "exit %+v", x)
	assert.Equal(t, syscall.SIGKILL, x.Signal)
	assert.Equal(t, "killed: out of memory, limit 64M", x.String())
}

// launchInCgroup starts a launcher whose worker, in cgroup name, has a
// setsid grandchild, and returns once the worker says it is ready. It is
// started directly, not under a reaper of its own as Start would: that
// reaper would kill the worker's reaper along with the launcher.
func launchInCgroup(t *testing.T, name, marker string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LAUNCHER_CHILD=launch-in-cgroup", "LAUNCHER_CGROUP="+name, marker,
		"GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "ready"), "launcher said %q", line)
	return cmd
}

// rtrain killed with SIGKILL: the reaper empties and removes the cgroup.
func TestKilledLauncherRemovesTheCgroup(t *testing.T) {
	name := testCgroup(t)
	marker := testutil.Marker(t)
	cmd := launchInCgroup(t, name, marker)
	g, err := cgroup.Load(name)
	require.NoError(t, err)
	procs, err := g.Procs()
	require.NoError(t, err)
	require.Len(t, procs, 2, "worker and its setsid grandchild in the group")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	testutil.NoProcesses(t, marker, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for len(testutil.CgroupsUnder(strings.Split(name, "/")[0])) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.Empty(t, testutil.CgroupsUnder(strings.Split(name, "/")[0]), "the reaper removed the group")
}

func TestFormatLimit(t *testing.T) {
	for n, want := range map[int64]string{300 << 20: "300M", 2 << 30: "2G", 1536 << 20: "1536M", 4096: "4K", 1000: "1000", 1 << 40: "1T"} {
		assert.Equal(t, want, formatLimit(n), "formatLimit(%d)", n)
	}
}

// rtrain killed together with its reapers (killall -9): the worker's
// setsid grandchild (and here the worker too: its parent-death signal
// does not always come) runs on in its group, which no reaper watches,
// until the next start's sweep kills it and removes the group.
func TestSweepOrphansKillsWhatDeadReapersLeft(t *testing.T) {
	name := testCgroup(t)
	top := strings.Split(name, "/")[0]
	marker := testutil.Marker(t)
	cmd := launchInCgroup(t, name, marker)

	n, err := SweepOrphans(t.Context(), top)
	require.NoError(t, err)
	assert.Zero(t, n, "a live launcher's worker is no orphan")

	// The launcher and its reaper, both at once.
	for _, pid := range append(descendants(cmd.Process.Pid), cmd.Process.Pid) {
		if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil && strings.Contains(string(env), reaperEnv+"=") || pid == cmd.Process.Pid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	_ = cmd.Wait()
	g, err := cgroup.Load(name)
	require.NoError(t, err)
	// Once the reaper is gone what is left is init's.
	require.Eventually(t, func() bool { p, _ := g.Procs(); return len(p) > 0 && orphaned(p) }, 5*time.Second, 20*time.Millisecond, "processes left in the group, unwatched")
	n, err = SweepOrphans(t.Context(), top)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	testutil.NoProcesses(t, marker, 5*time.Second)
	assert.Empty(t, testutil.CgroupsUnder(top))
}
