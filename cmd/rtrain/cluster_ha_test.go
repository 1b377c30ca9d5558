package main

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var paramSum = regexp.MustCompile(`param_sum=(\S+)`)

// The head SIGKILLed mid-job, across a checkpoint, and started again: the
// agents keep the workers, the new head adopts the job, the checkpoint
// reported while it was down is committed once, no restart is counted,
// and the job trains exactly as it would have without the outage.
func TestClusterHeadRestartAdoptsRunningJobs(t *testing.T) {
	c := newTestCluster(t, 2)
	args := []string{"--workers", "2", "--placement", "STRICT_SPREAD", "testdata/steady.py", "16", "4", "0.4"}

	out, errs, code := c.run(c.head, append([]string{"fit", "--name", "calm"}, args...)...)
	require.Equal(t, exitOK, code, "%s\n%s", out, errs)
	want := paramSum.FindStringSubmatch(out)
	require.NotNil(t, want, out)

	out, errs, code = c.run(c.head, append([]string{"fit", "--no-wait", "--name", "stormy"}, args...)...)
	require.Equal(t, exitOK, code, errs)
	job := regexp.MustCompile(`submitted job (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, job, out)
	c.waitJob(job[1], "RUNNING")
	// Killed after the first checkpoint (step 4), before the second (8).
	c.waitLog(job[1], "step 5")

	head := c.daemons[c.head.Name()]
	require.NoError(t, head.Process.Signal(syscall.SIGKILL))
	_ = head.Wait()
	workers := holdersOf(t, "testdata/steady.py")
	require.NotEmpty(t, workers, "the workers outlive the head")
	time.Sleep(4 * time.Second) // across the checkpoint at step 8
	c.daemon(c.head, "head", "start", "--head", "--block", "--host", c.head.Addr(), "--port", c.port,
		"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s")

	j := c.waitJob(job[1], "SUCCEEDED")
	assert.Equal(t, 1, j.Attempts, "no restart is counted: %+v", j)
	logs, errs, code := c.run(c.head, "logs", job[1])
	require.Equal(t, exitOK, code, errs)
	got := paramSum.FindStringSubmatch(logs)
	require.NotNil(t, got, logs)
	assert.Equal(t, want[1], got[1], "the parameters of a run with the outage and one without")

	ckpts, err := filepath.Glob(filepath.Join(c.dirs[c.head.Name()], "rtrain_results", "stormy", "checkpoint_*"))
	require.NoError(t, err)
	sort.Strings(ckpts)
	var names []string
	for _, p := range ckpts {
		names = append(names, filepath.Base(p))
	}
	assert.Equal(t, []string{"checkpoint_000001", "checkpoint_000002", "checkpoint_000003", "checkpoint_000004"}, names, "each checkpoint committed once")
	for _, p := range ckpts {
		_, err := os.Stat(filepath.Join(p, "model.pt"))
		assert.NoError(t, err, "%s has its files", p)
	}
}

// waitLog waits until job's output has a line containing s.
func (c *testCluster) waitLog(job, s string) {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, _, _ := c.run(c.head, "logs", job)
		if regexp.MustCompile(regexp.QuoteMeta(s) + `\b`).MatchString(out) {
			return
		}
		require.True(c.t, time.Now().Before(deadline), "job %s never printed %q: %s", job, s, out)
		time.Sleep(200 * time.Millisecond)
	}
}

// The head down longer than the agents' --head-timeout: they stop the
// workers, none is left running with no head, and the head that comes
// back ends the job with a message that says why.
func TestClusterHeadTimeoutStopsTheWorkers(t *testing.T) {
	short := []string{"--head-timeout", "3s"}
	c := newTestCluster(t, 2, short, short)
	out, errs, code := c.run(c.head, "fit", "--no-wait", "--workers", "2", "--placement", "STRICT_SPREAD", "--max-failures", "0",
		"--name", "abandoned", "testdata/steady.py", "1000", "1000", "0.2")
	require.Equal(t, exitOK, code, errs)
	job := regexp.MustCompile(`submitted job (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, job, out)
	c.waitJob(job[1], "RUNNING")
	c.waitLog(job[1], "step 2")

	head := c.daemons[c.head.Name()]
	require.NoError(t, head.Process.Signal(syscall.SIGKILL))
	_ = head.Wait()
	require.NotEmpty(t, holdersOf(t, "testdata/steady.py"), "the workers outlive the head for a while")
	require.Eventually(t, func() bool { return len(holdersOf(t, "testdata/steady.py")) == 0 }, 30*time.Second, 100*time.Millisecond,
		"past the head timeout the workers are stopped")

	c.daemon(c.head, "head", "start", "--head", "--block", "--host", c.head.Addr(), "--port", c.port,
		"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s")
	j := c.waitJob(job[1], "FAILED")
	assert.Contains(t, j.Message, "no head came back within the head timeout (3s)")
}
