package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/internal/etcdserver"
	"github.com/rtrain/rtrain/internal/netns"
	"github.com/rtrain/rtrain/internal/testutil"
)

var paramSum = regexp.MustCompile(`param_sum=(\S+)`)

// The head SIGKILLed mid-job, across a checkpoint, and started again: the
// agents keep the workers, the new head adopts the job, the checkpoint
// reported while it was down is committed once, no restart is counted,
// and the job trains exactly as it would have without the outage. The
// checkpoints go to S3 (MinIO on the head's host): the new head takes the
// run's storage lease over from the one it replaced.
func TestClusterHeadRestartAdoptsRunningJobs(t *testing.T) {
	c := prepareCluster(t, 2)
	runs := c.withS3() + "/runs"
	c.start()
	args := []string{"--workers", "2", "--placement", "STRICT_SPREAD", "--storage", runs, "testdata/steady.py", "16", "4", "0.4"}

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

	ls, errs, code := c.run(c.head, "checkpoints", "ls", runs+"/stormy")
	require.Equal(t, exitOK, code, errs)
	names := regexp.MustCompile(`checkpoint_\d+`).FindAllString(ls, -1)
	assert.Equal(t, []string{"checkpoint_000001", "checkpoint_000002", "checkpoint_000003", "checkpoint_000004"}, names, "each checkpoint committed once:\n%s", ls)
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

// newHACluster is two heads on etcd, the first leading, and two agents,
// each in a network namespace of its own: etcd runs on the first head's
// host. The job storage is a directory both heads may write, as a shared
// file system is.
func newHACluster(t *testing.T) (c *testCluster, standby *netns.Host, etcd *etcdserver.Server, shared string) {
	t.Helper()
	testutil.Python(t)
	n := netns.New(t, 4)
	c = &testCluster{t: t, net: n, token: auth.NewToken(), marker: testutil.Marker(t),
		head: n.Hosts()[0], port: "6379", daemons: map[string]*exec.Cmd{}, dirs: map[string]string{}, base: t.TempDir()}
	standby = n.Hosts()[1]
	shared = filepath.Join(c.base, "shared")
	require.NoError(t, os.MkdirAll(shared, 0o755))
	// Stopped after the daemons, whose cleanup comes later.
	etcd = testutil.Etcd(t, etcdserver.Options{Host: c.head.Addr(), Command: c.head.Command})
	t.Cleanup(c.stop)
	c.addrs = c.head.Addr() + ":" + c.port + "," + standby.Addr() + ":" + c.port
	c.startHead(c.head, etcd, shared)
	c.waitRole(c.head, "active")
	c.startHead(standby, etcd, shared)
	c.waitRole(standby, "standby")
	for _, h := range n.Hosts()[2:] {
		c.daemon(h, "agent", "start", "--block", "--address", c.addrs, "--insecure", "--num-cpus", "2", "--node-name", nodeName(h))
	}
	return c, standby, etcd, shared
}

func (c *testCluster) startHead(h *netns.Host, etcd *etcdserver.Server, shared string) {
	c.t.Helper()
	c.daemon(h, "head", "start", "--head", "--block", "--host", h.Addr(), "--port", c.port, "--insecure",
		"--store", "etcd://"+etcd.Addr(), "--allow-storage", shared,
		"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s")
}

// waitRole waits until the head on h is role ("active" or "standby") as
// `rtrain status` through it lists the heads.
func (c *testCluster) waitRole(h *netns.Host, role string) {
	c.t.Helper()
	self := h.Addr() + ":" + c.port
	deadline := time.Now().Add(time.Minute)
	for {
		out, errs, code := c.run(h, "status", "-o", "json", "--insecure", "--address", self)
		var st struct {
			Heads []struct {
				Addr   string `json:"addr"`
				Leader bool   `json:"leader"`
			} `json:"heads"`
		}
		if code == exitOK && json.Unmarshal([]byte(out), &st) == nil {
			for _, m := range st.Heads {
				if m.Addr == self && m.Leader == (role == "active") {
					return
				}
			}
		}
		require.True(c.t, time.Now().Before(deadline), "head on %s never %s: %s %s", h.Name(), role, out, errs)
		time.Sleep(100 * time.Millisecond)
	}
}

// Two heads on etcd, the leader SIGKILLed, or stopped gracefully, mid-job:
// the standby leads (within two lease TTLs; at once when the leader
// resigns as it hands off), adopts the job, which finishes with no restart counted;
// the client that submitted it follows it across and exits 0; each
// checkpoint is committed once. The old leader, started again, stands by.
func TestClusterStandbyHeadTakesOver(t *testing.T) {
	// SIGTERM: the leader hands off, resigning, rather than end the job.
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) { standbyTakesOver(t, sig) })
	}
}

func standbyTakesOver(t *testing.T, sig syscall.Signal) {
	c, standby, etcd, shared := newHACluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wait := c.followFit(ctx, "step 5", "--name", "failover", "--storage", shared, "testdata/steady.py", "16", "4", "0.4")

	leader := c.daemons[c.head.Name()]
	require.NoError(t, leader.Process.Signal(sig))
	_ = leader.Wait()
	killed := time.Now()
	c.waitRole(standby, "active")
	t.Logf("the standby leads %s after the leader's end (%s)", time.Since(killed).Round(time.Millisecond), sig)

	// The old leader comes back as a standby, and never runs the job twice.
	c.startHead(c.head, etcd, shared)
	c.waitRole(c.head, "standby")

	out, err := wait()
	require.NoError(t, err, out)
	assert.Contains(t, out, "param_sum=")

	for _, h := range []*netns.Host{c.head, standby} {
		out, errs, code := c.run(h, "status", "--insecure", "--address", c.addrs)
		require.Equal(t, exitOK, code, errs)
		assert.Contains(t, out, "2 of 2 nodes alive", "status through %s", h.Name())
	}
	c.succeededOnce(shared, "failover", 4)
}

// etcd itself killed for longer than the lease and started again: the
// leader lets go of the cluster and starts over as a standby, one head
// leads once etcd is back and adopts the job, and the job finishes with
// nothing lost: no restart counted, every checkpoint committed once.
func TestClusterHeadsRideOutAnEtcdRestart(t *testing.T) {
	c, _, etcd, shared := newHACluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wait := c.followFit(ctx, "step 3", "--name", "outage", "--storage", shared, "testdata/steady.py", "40", "5", "0.3")

	etcd.Kill()
	time.Sleep(7 * time.Second) // past the 5 s lease
	require.NoError(t, etcd.Restart(ctx))
	logs, err := os.ReadFile(filepath.Join(c.dirs[c.head.Name()], "head.log"))
	require.NoError(t, err)
	assert.Contains(t, string(logs), "starting over as a standby", "the leader let go when its lease could not be renewed")

	out, err := wait()
	require.NoError(t, err, out)
	c.succeededOnce(shared, "outage", 8)
}

// succeededOnce checks that the cluster's one job, run name in shared,
// succeeded with no restart counted and n checkpoints, each committed
// once.
func (c *testCluster) succeededOnce(shared, name string, n int) {
	t := c.t
	t.Helper()
	ckpts, err := filepath.Glob(filepath.Join(shared, name, "checkpoint_*"))
	require.NoError(t, err)
	assert.Len(t, ckpts, n, "each checkpoint committed once: %v", ckpts)
	out2, errs, code := c.run(c.head, "jobs", "-o", "json", "--insecure", "--address", c.addrs)
	require.Equal(t, exitOK, code, errs)
	var jobs []jobJSON
	require.NoError(t, json.Unmarshal([]byte(out2), &jobs))
	require.Len(t, jobs, 1)
	assert.Equal(t, "SUCCEEDED", jobs[0].State)
	assert.Equal(t, 1, jobs[0].Attempts, "no restart is counted")
}

// An agent cut off long enough for the head to declare its node dead, with
// no peer to tell it so, keeps its workers while it cannot know; once it
// reaches the head again, which no longer follows them (their job failed
// meanwhile), it stops them.
func TestClusterAgentStopsWorkersTheHeadNoLongerKnows(t *testing.T) {
	c := newTestCluster(t, 1)
	out, errs, code := c.run(c.head, "fit", "--no-wait", "--workers", "1", "--max-failures", "0", "--name", "orphan",
		"testdata/steady.py", "1000", "1000", "0.2")
	require.Equal(t, exitOK, code, errs)
	job := regexp.MustCompile(`submitted job (\S+)`).FindStringSubmatch(out)
	require.NotNil(t, job, out)
	c.waitJob(job[1], "RUNNING")
	c.waitLog(job[1], "step 2")

	node := c.net.Hosts()[1]
	require.NoError(t, node.LinkDown())
	t.Cleanup(func() { _ = node.LinkUp() })
	j := c.waitJob(job[1], "FAILED")
	assert.Contains(t, j.Message, "lost")
	assert.NotEmpty(t, holdersOf(t, "testdata/steady.py"), "the cut-off agent keeps its workers while it cannot tell")

	require.NoError(t, node.LinkUp())
	require.Eventually(t, func() bool { return len(holdersOf(t, "testdata/steady.py")) == 0 }, 30*time.Second, 100*time.Millisecond,
		"back in touch with the head, the agent stops the workers it no longer follows")
}

// followFit starts `rtrain fit` of a 2-worker job on two nodes with args
// on the first head's host, following it as a user does, and returns once
// its output has a line containing until; wait waits for it to end and
// returns all it printed.
func (c *testCluster) followFit(ctx context.Context, until string, args ...string) (wait func() (string, error)) {
	c.t.Helper()
	fit := c.head.Enter(ctx, os.Args[0], append([]string{"fit", "--insecure", "--workers", "2", "--placement", "STRICT_SPREAD"}, args...)...)
	fit.Env = c.env(c.t.TempDir())
	fit.Dir = repo(c.t, "cmd", "rtrain")
	pr, pw := io.Pipe()
	var out bytes.Buffer
	// One writer for both, so that exec writes from one goroutine at a time.
	both := io.MultiWriter(pw, &out)
	fit.Stdout, fit.Stderr = both, both
	require.NoError(c.t, fit.Start())
	sc := bufio.NewScanner(pr)
	for sc.Scan() && !strings.Contains(sc.Text(), until) {
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	return func() (string, error) {
		err := fit.Wait()
		_ = pw.Close()
		return out.String(), err
	}
}
