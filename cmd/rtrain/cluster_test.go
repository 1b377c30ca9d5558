package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/rtrain/rtrain/internal/netns"
	"github.com/rtrain/rtrain/internal/testutil"
)

// testCluster is a head and agents, each in a network namespace of its own,
// run from this test binary acting as rtrain.
type testCluster struct {
	t      *testing.T
	net    *netns.Net
	token  string
	marker string
	head   *netns.Host
	port   string
	// daemons by host name.
	daemons map[string]*exec.Cmd
	dirs    map[string]string
	// base holds the daemons' directories. It is made before the cleanup
	// that stops the daemons is registered, so it is removed after that
	// cleanup: a TempDir made later would go first, while a daemon (one
	// just thawed from SIGSTOP, say) still writes in it.
	base string
	// addrs, when set, are the heads' addresses (a cluster with standbys).
	addrs string
	// extraEnv is more of every process's environment (withS3's).
	extraEnv []string
}

// newTestCluster starts a head and agents in their own network
// namespaces. agentArgs, when given, are extra flags of each agent in turn.
func newTestCluster(t *testing.T, agents int, agentArgs ...[]string) *testCluster {
	t.Helper()
	c := prepareCluster(t, agents)
	c.start(agentArgs...)
	return c
}

// prepareCluster makes the hosts of a cluster with agents agents, and
// their clean-up, but starts no daemon: start does.
func prepareCluster(t *testing.T, agents int) *testCluster {
	t.Helper()
	testutil.Python(t)
	n := netns.New(t, agents+1)
	c := &testCluster{t: t, net: n, token: auth.NewToken(), marker: testutil.Marker(t),
		head: n.Hosts()[0], port: "6379", daemons: map[string]*exec.Cmd{}, dirs: map[string]string{}, base: t.TempDir()}
	t.Cleanup(c.stop)
	return c
}

// stop ends the cluster's daemons (SIGTERM, then SIGKILL past 20 s),
// shows their logs when the test failed, and checks that nothing of
// theirs is left.
func (c *testCluster) stop() {
	t := c.t
	for _, d := range c.daemons {
		_ = d.Process.Signal(syscall.SIGTERM)
	}
	for _, d := range c.daemons {
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
		for name, dir := range c.dirs {
			for _, f := range []string{"head.log", "agent.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
					t.Logf("%s %s:\n%s", name, f, b)
				}
			}
		}
	}
	testutil.NoProcesses(t, c.marker, 10*time.Second)
	testutil.NoCgroups(t, cgroupParent, 5*time.Second)
}

// start starts the cluster's head, then its agents; agentArgs, when
// given, are extra flags of each agent in turn.
func (c *testCluster) start(agentArgs ...[]string) {
	t := c.t
	t.Helper()
	c.daemon(c.head, "head", "start", "--head", "--block", "--host", c.head.Addr(), "--port", c.port,
		"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s")
	// Agents and clients join with what the head saved: the join token,
	// which pins the head's own CA.
	join, err := os.ReadFile(filepath.Join(c.dirs[c.head.Name()], "token"))
	require.NoError(t, err)
	c.token = strings.TrimSpace(string(join))
	require.True(t, strings.HasPrefix(c.token, "rt1-"), "the head saved a join token: %q", c.token)
	for i, h := range c.net.Hosts()[1:] {
		args := []string{"start", "--block", "--address", c.addr(), "--num-cpus", "2", "--node-name", nodeName(h)}
		if i < len(agentArgs) {
			args = append(args, agentArgs[i]...)
		}
		c.daemon(h, "agent", args...)
	}
}

func nodeName(h *netns.Host) string { return "node-" + h.Addr()[strings.LastIndex(h.Addr(), ".")+1:] }

func (c *testCluster) addr() string {
	if c.addrs != "" {
		return c.addrs
	}
	return c.head.Addr() + ":" + c.port
}

// env is what every rtrain process of the cluster runs with.
func (c *testCluster) env(dir string) []string {
	env := append(os.Environ(), "RTRAIN_TEST_AS_CLI=1", c.marker, "HOME="+dir, "RTRAIN_STATE_DIR="+dir,
		auth.TokenEnv+"="+c.token, "RTRAIN_PYTHON=/usr/bin/python3", AddressEnv+"="+c.addr())
	return append(env, c.extraEnv...)
}

// daemon starts `rtrain start --block` on h and waits until it is up.
func (c *testCluster) daemon(h *netns.Host, role string, args ...string) {
	c.t.Helper()
	dir, ok := c.dirs[h.Name()]
	if !ok { // a daemon started again keeps its state
		var err error
		dir, err = os.MkdirTemp(c.base, h.Name()+"-")
		require.NoError(c.t, err)
		c.dirs[h.Name()] = dir
	}
	cmd := h.Enter(context.Background(), os.Args[0], args...)
	cmd.Env = c.env(dir)
	logFile, err := os.OpenFile(filepath.Join(dir, role+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(c.t, err)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(c.t, cmd.Start())
	c.daemons[h.Name()] = cmd
	ready := filepath.Join(dir, role+".ready")
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(ready); err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, role+".log"))
			c.t.Fatalf("%s on %s not up after a minute:\n%s", role, h.Name(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs `rtrain args...` on h to its end.
func (c *testCluster) run(h *netns.Host, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := h.Enter(ctx, os.Args[0], args...)
	cmd.Env = c.env(c.t.TempDir())
	cmd.Dir = repo(c.t, "cmd", "rtrain")
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	_ = cmd.Run()
	require.NoError(c.t, ctx.Err(), "rtrain %v hung; stderr:\n%s", args, errs.String())
	return out.String(), errs.String(), cmd.ProcessState.ExitCode()
}

var checksumLine = regexp.MustCompile(`\[rank (\d) (node-\d+)\] rank \d of 4 master (\S+) checksum (\S+)`)

func TestClusterRunsDDPAcrossNodes(t *testing.T) {
	c := newTestCluster(t, 2, nil, []string{"--resources", `{"licence": 1}`})
	hosts := c.net.Hosts()

	out, errs, code := c.run(c.head, "status")
	require.Equal(t, exitOK, code, errs)
	assert.Contains(t, out, "2 of 2 nodes alive")
	for _, h := range hosts[1:] {
		assert.Regexp(t, nodeName(h)+`\s+`+regexp.QuoteMeta(h.Addr())+`\s+alive\s+2/2`, out)
	}

	out, errs, code = c.run(c.head, "fit", "--address", c.addr(), "--workers", "4", "--cpus-per-worker", "1",
		"--placement", "SPREAD", "testdata/ddp_agree.py")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out, errs)
	matches := checksumLine.FindAllStringSubmatch(out, -1)
	require.Len(t, matches, 4, out)
	perNode := map[string][]string{}
	for _, m := range matches {
		perNode[m[2]] = append(perNode[m[2]], m[1])
		assert.Equal(t, hosts[1].Addr(), m[3], "MASTER_ADDR is the address of rank 0's node")
		assert.Equal(t, matches[0][4], m[4], "every rank holds the same parameters")
	}
	// SPREAD puts two ranks on each agent, contiguous per node.
	assert.ElementsMatch(t, []string{"0", "1"}, perNode[nodeName(hosts[1])])
	assert.ElementsMatch(t, []string{"2", "3"}, perNode[nodeName(hosts[2])])
	assert.Contains(t, errs, "4 workers on 2 nodes")

	out, errs, code = c.run(c.head, "jobs", "--address", c.addr())
	require.Equal(t, exitOK, code, errs)
	assert.Contains(t, out, "SUCCEEDED")

	// A wrong token is refused, in one line that says what to do.
	_, fp := auth.SplitToken(c.token)
	_, errs, code = c.run(hosts[2], "status", "--address", c.addr(), "--token", auth.JoinToken("not-the-token", fp))
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, errs, "wrong cluster token")
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(errs), "\n")+1, errs)
	// The bare secret, with nothing to verify the head by, is not sent
	// over the network at all.
	secret, _ := auth.SplitToken(c.token)
	_, errs, code = c.run(hosts[2], "status", "--address", c.addr(), "--token", secret)
	assert.Equal(t, exitUsage, code, errs)
	assert.Contains(t, errs, "pass the join token")
	// A client with another head's pin does not get in, nor learn the token.
	_, errs, code = c.run(hosts[2], "status", "--address", c.addr(), "--token", auth.JoinToken(secret, strings.Repeat("0", 64)))
	assert.Equal(t, exitFailed, code, errs)
	// --insecure to a TLS head fails too.
	_, _, code = c.run(hosts[2], "status", "--address", c.addr(), "--token", secret, "--insecure")
	assert.Equal(t, exitFailed, code)

	// Workers that reserve no cores fit anywhere on paper: past 64 a
	// core on one node they are refused, not started.
	_, errs, code = c.run(c.head, "fit", "--address", c.addr(), "--workers", "1000", "--placement", "PACK", "testdata/hello.py")
	assert.Equal(t, exitUsage, code, errs)
	assert.Contains(t, errs, "rtrain runs at most 128 workers there (64 a core)")

	// A request no node can hold fails at once, naming the largest fit.
	_, errs, code = c.run(c.head, "fit", "--address", c.addr(), "--workers", "2", "--cpus-per-worker", "1.5",
		"--placement", "STRICT_PACK", "testdata/hello.py")
	assert.Equal(t, exitUsage, code, errs)
	assert.Contains(t, errs, "asked 2 × {CPU: 1.5} with STRICT_PACK; the largest node holds 1")

	// A worker that needs a custom resource goes to the node that offers
	// it, and a job that needs more of it than the cluster has fails at
	// once.
	out, errs, code = c.run(c.head, "status", "--address", c.addr())
	require.Equal(t, exitOK, code, errs)
	assert.Contains(t, out, "licence 1/1")
	for range 2 {
		out, errs, code = c.run(c.head, "fit", "--address", c.addr(), "--resources-per-worker", "licence=1", "testdata/hello.py")
		require.Equal(t, exitOK, code, errs)
		assert.Contains(t, out, "[rank 0 "+nodeName(hosts[2])+"] hello from rank 0")
	}
	_, errs, code = c.run(c.head, "fit", "--address", c.addr(), "--workers", "2", "--resources-per-worker", `{"licence": 1}`, "testdata/hello.py")
	assert.Equal(t, exitUsage, code, errs)
	assert.Contains(t, errs, `asked 2 of custom resource "licence", the 2 nodes have 1`)
}

func TestClusterDeclaresAKilledAgentDead(t *testing.T) {
	c := newTestCluster(t, 2)
	victim := c.net.Hosts()[2]
	d := c.daemons[victim.Name()]
	killed := time.Now()
	require.NoError(t, d.Process.Kill())
	_ = d.Wait()
	delete(c.daemons, victim.Name())

	// The head's timeout is 2 s; it checks ten times a timeout.
	var out string
	for time.Since(killed) < 10*time.Second {
		var code int
		out, _, code = c.run(c.head, "status", "-o", "json")
		require.Equal(t, exitOK, code)
		if strings.Contains(out, `"state": "dead"`) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(killed)
	require.Contains(t, out, `"state": "dead"`, "the killed agent's node is declared dead")
	t.Logf("killed agent declared dead after %s (timeout 2s)", took.Round(10*time.Millisecond))
	assert.Contains(t, out, `"id": "`+nodeName(c.net.Hosts()[1])+`"`)
}

// waitJob waits until job is in state, and returns it as `rtrain jobs`
// lists it.
func (c *testCluster) waitJob(job, state string) jobJSON {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, errs, code := c.run(c.head, "jobs", "-o", "json")
		if code == exitOK {
			var jobs []jobJSON
			require.NoError(c.t, json.Unmarshal([]byte(out), &jobs), out)
			for _, j := range jobs {
				if j.ID == job && j.State == state {
					return j
				}
			}
		}
		require.True(c.t, time.Now().Before(deadline), "job %s never %s: %s %s", job, state, out, errs)
		time.Sleep(100 * time.Millisecond)
	}
}

// holders are the pids of processes running hold.py.
func holders(t *testing.T) []string { return holdersOf(t, "testdata/hold.py") }

// holdersOf are the pids of processes running script.
func holdersOf(t *testing.T, script string) []string {
	out, _ := exec.Command("pgrep", "-f", script).Output()
	return strings.Fields(string(out))
}
