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

// rtrain killed with SIGKILL: the reaper empties and removes the cgroup.
func TestKilledLauncherRemovesTheCgroup(t *testing.T) {
	name := testCgroup(t)
	marker := testutil.Marker(t)
	// Started directly, not under a reaper of its own as Start would: that
	// reaper would kill the worker's reaper along with the launcher.
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
