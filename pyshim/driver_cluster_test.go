package pyshim

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/netns"
	"github.com/rtrain/rtrain/internal/pyenv"
	"github.com/rtrain/rtrain/internal/testutil"
)

// cluster is a head and agents that `rtrain start` runs, each on a network
// namespace host of its own, plus a client host for drivers and commands.
// Every daemon is the wheel's own binary: the driver refuses a head of
// another version.
type cluster struct {
	t      *testing.T
	py     *pyenv.Env
	marker string
	head   *netns.Host
	agents []*netns.Host
	client *netns.Host
	token  string
	dirs   map[*netns.Host]string // each host's HOME and RTRAIN_STATE_DIR
}

const headPort = "6379"

func newCluster(t *testing.T, agents int) *cluster {
	t.Helper()
	testutil.Python(t)
	py := pyenv.Venv(t)
	hosts := netns.New(t, agents+2).Hosts()
	c := &cluster{t: t, py: py, marker: testutil.Marker(t), head: hosts[0], agents: hosts[1 : agents+1],
		client: hosts[agents+1], dirs: map[*netns.Host]string{}}
	// Made before the cleanup is registered, so removed after it: the
	// daemons write there until they stop.
	for _, h := range hosts {
		c.dirs[h] = t.TempDir()
	}
	var daemons []*exec.Cmd
	t.Cleanup(func() {
		for _, d := range daemons {
			_ = d.Process.Signal(syscall.SIGTERM)
		}
		for _, d := range daemons {
			done := make(chan struct{})
			go func() { _ = d.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = d.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			for h, dir := range c.dirs {
				for _, f := range []string{"head.log", "agent.log"} {
					if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
						t.Logf("%s %s:\n%s", h.Name(), f, b)
					}
				}
			}
		}
		testutil.NoProcesses(t, c.marker, 10*time.Second)
		testutil.NoCgroups(t, cgroupParent, 5*time.Second)
	})
	start := func(h *netns.Host, role string, args ...string) {
		dir := c.dir(h)
		cmd := h.Enter(context.Background(), py.Binary, args...)
		cmd.Env = c.env(h)
		if role == "agent" {
			// A node runs workers with its own interpreter, not the
			// driver's: Debian's python3, which has torch and cloudpickle.
			cmd.Env = append(cmd.Env, "RTRAIN_PYTHON="+testutil.Python(t))
		}
		log, err := os.Create(filepath.Join(dir, role+".log"))
		require.NoError(t, err)
		defer log.Close()
		cmd.Stdout, cmd.Stderr = log, log
		require.NoError(t, cmd.Start())
		daemons = append(daemons, cmd)
		require.Eventually(t, func() bool { _, err := os.Stat(filepath.Join(dir, role+".ready")); return err == nil },
			time.Minute, 20*time.Millisecond, "%s on %s not up", role, h.Name())
	}
	start(c.head, "head", "start", "--head", "--block", "--host", c.head.Addr(), "--port", headPort,
		"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s")
	// Clients join with what the head saved: the join token, which pins
	// the head's own CA.
	join, err := os.ReadFile(filepath.Join(c.dir(c.head), "token"))
	require.NoError(t, err)
	c.token = strings.TrimSpace(string(join))
	for _, h := range c.agents {
		start(h, "agent", "start", "--block", "--address", c.addr(), "--num-cpus", "2", "--node-name", nodeName(h))
	}
	return c
}

func nodeName(h *netns.Host) string { return "node-" + h.Addr()[strings.LastIndex(h.Addr(), ".")+1:] }

func (c *cluster) addr() string { return c.head.Addr() + ":" + headPort }

func (c *cluster) dir(h *netns.Host) string { return c.dirs[h] }

// env is what every process on h runs with: the venv's environment, h's
// own home and state, the marker, and, once the head is up, the way to it.
func (c *cluster) env(h *netns.Host) []string {
	dir := c.dir(h)
	env := append(c.py.Env(), c.marker, "HOME="+dir, "RTRAIN_STATE_DIR="+dir)
	if c.token != "" {
		env = append(env, "RTRAIN_ADDRESS="+c.addr(), "RTRAIN_TOKEN="+c.token)
	}
	return env
}

// rtrain runs the wheel's binary with args on the client host to its end.
func (c *cluster) rtrain(ctx context.Context, args ...string) (stdout, stderr string) {
	c.t.Helper()
	cmd := c.client.Enter(ctx, c.py.Binary, args...)
	cmd.Env = c.env(c.client)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	require.NoError(c.t, cmd.Run(), "rtrain %v:\n%s%s", args, out.String(), errs.String())
	return out.String(), errs.String()
}

var clusterRankLine = regexp.MustCompile(`\[rank (\d) (node-\d+)\] rank \d of 4 on (\S+) master (\S+) helper (\S+)`)

// rtrain jobs, rtrain logs and the dashboard show a driver's run like any
// other: TorchTrainer.fit() against a cluster is `rtrain fit --address`.
func TestDriverOnACluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := newCluster(t, 2)

	dir := t.TempDir()
	for _, f := range []string{"cluster.py", "helper.py"} {
		src, err := os.ReadFile(filepath.Join("testdata", "drivers", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), src, 0o644))
	}
	cmd := c.client.Enter(ctx, c.py.Python, "cluster.py")
	cmd.Dir = dir
	cmd.Env = append(c.env(c.client), "RUN_NAME=drv-cluster")
	var got struct {
		Metrics    map[string]any `json:"metrics"`
		Checkpoint string         `json:"checkpoint"`
		Path       string         `json:"path"`
		JobID      string         `json:"job_id"`
		Name       string         `json:"name"`
	}
	out := lastJSON(t, cmd, &got)

	assert.Equal(t, map[string]any{"epoch": 1.0, "ranks": 4.0, "world": 4.0, "scaled": 10.0}, got.Metrics, out)
	results := filepath.Join(c.dir(c.head), "rtrain_results")
	assert.Equal(t, filepath.Join(results, "drv-cluster", "checkpoint_000002"), got.Checkpoint, "on the head's storage")
	saved, err := os.ReadFile(filepath.Join(got.Checkpoint, "epoch"))
	assert.NoError(t, err, "rank 0's checkpoint reached the head")
	assert.Equal(t, "1", string(saved))
	assert.Equal(t, filepath.Join(results, "drv-cluster"), got.Path)
	assert.Equal(t, "drv-cluster", got.Name)
	require.NotEmpty(t, got.JobID)

	ranks := clusterRankLine.FindAllStringSubmatch(out, -1)
	require.Len(t, ranks, 4, out)
	perNode := map[string][]string{}
	for _, m := range ranks {
		perNode[m[2]] = append(perNode[m[2]], m[1])
		assert.Equal(t, c.agents[0].Addr(), m[4], "MASTER_ADDR is rank 0's node")
	}
	for _, h := range c.agents {
		assert.Len(t, perNode[nodeName(h)], 2, "two ranks on %s: %v", nodeName(h), perNode)
		for _, m := range ranks {
			if m[2] == nodeName(h) {
				assert.Equal(t, h.Addr(), m[3], "rank %s runs on %s's host", m[1], nodeName(h))
				// By name, from the working directory shipped to the node,
				// not from the driver's directory.
				assert.True(t, strings.HasPrefix(m[5], c.dir(h)+string(filepath.Separator)),
					"rank %s imported helper from %s, want the copy under %s's %s", m[1], m[5], nodeName(h), c.dir(h))
			}
		}
	}

	stdout, _ := c.rtrain(ctx, "jobs", "-o", "json")
	var jobs []struct{ ID, Name, State string }
	require.NoError(t, json.Unmarshal([]byte(stdout), &jobs), stdout)
	var listed bool
	for _, j := range jobs {
		if j.Name == "drv-cluster" {
			listed = true
			assert.Equal(t, got.JobID, j.ID)
			assert.Equal(t, "SUCCEEDED", j.State)
		}
	}
	assert.True(t, listed, "rtrain jobs lists the driver's job: %s", stdout)

	stdout, _ = c.rtrain(ctx, "logs", got.JobID)
	for _, m := range ranks {
		assert.Contains(t, stdout, m[0], "rtrain logs prints the workers' lines")
	}
	assert.Contains(t, stdout, "epoch 1 done")
}

// A sweep whose driver is on another host than the cluster: every trial a
// job in the experiment's group, listed with its params and best score.
func TestSweepOnACluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := newCluster(t, 1)
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "drivers", "tune_cluster.py"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tune_cluster.py"), src, 0o644))
	cmd := c.client.Enter(ctx, c.py.Python, "tune_cluster.py")
	cmd.Dir = dir
	cmd.Env = c.env(c.client)
	var got struct {
		Trials int      `json:"trials"`
		Errors int      `json:"errors"`
		Names  []string `json:"names"`
	}
	out := lastJSON(t, cmd, &got)
	require.Equal(t, 3, got.Trials, out)
	assert.Zero(t, got.Errors)

	stdout, _ := c.rtrain(ctx, "jobs", "--group", "clsweep", "-o", "json")
	var jobs []struct {
		Name, State, Group, Metric, Mode string
		Params                           map[string]string
		Best                             *float64
		BestIteration                    int `json:"best_iteration"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &jobs), stdout)
	require.Len(t, jobs, 3, stdout)
	var names []string
	for _, j := range jobs {
		names = append(names, j.Name)
		assert.Equal(t, "SUCCEEDED", j.State)
		assert.Equal(t, "clsweep", j.Group)
		assert.Equal(t, "score", j.Metric)
		assert.Equal(t, "max", j.Mode)
		lr, err := strconv.ParseFloat(j.Params["lr"], 64)
		require.NoError(t, err, "params: %v", j.Params)
		require.NotNil(t, j.Best, stdout)
		assert.InDelta(t, lr*10, *j.Best, 1e-9, "the best is the last report's")
		assert.Equal(t, 3, j.BestIteration)
	}
	sort.Strings(names)
	assert.Equal(t, got.Names, names)
	table, _ := c.rtrain(ctx, "jobs", "--group", "clsweep")
	assert.Contains(t, table, "lr=0.3")
	assert.Contains(t, table, "score=3")
}
