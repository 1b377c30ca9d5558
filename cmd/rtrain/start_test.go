package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/auth"
)

// rtrain start returns once its daemon is up, the local CLI finds the head
// and its token, and rtrain stop stops it.
func TestStartInTheBackgroundAndStop(t *testing.T) {
	state := t.TempDir()
	start := rtrain(t, "start", "--head", "--host", "127.0.0.1", "--port", "0", "--dashboard-port", "-1", "--state-dir", state)
	start.cmd.Env = append(start.cmd.Env, auth.TokenEnv+"=")
	require.Equal(t, exitOK, start.run(t), start.stderr.String())
	out := start.stdout.String()
	assert.Regexp(t, `rtrain: head started \(pid \d+\)`, out)
	assert.Regexp(t, `cluster token: rt1-[0-9a-f]{64}-[0-9a-f]{48}`, out, "a generated join token is printed once")
	assert.Contains(t, out, "TLS: the head's own CA, "+filepath.Join(state, "tls", "ca.pem"))
	headLog, err := os.ReadFile(filepath.Join(state, "head.log"))
	require.NoError(t, err)
	token := regexp.MustCompile(`cluster token: rt1-[0-9a-f]{64}-([0-9a-f]{48})`).FindStringSubmatch(out)
	require.Len(t, token, 2)
	assert.NotContains(t, string(headLog), token[1], "the token is in the daemon's log")
	key, err := os.Stat(filepath.Join(state, "tls", "ca-key.pem"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), key.Mode().Perm(), "the CA's key")
	fi, err := os.Stat(filepath.Join(state, "token"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	pid, ok := livePid(filepath.Join(state, "head.pid"))
	require.True(t, ok, "the daemon runs")

	st := rtrain(t, "status", "--state-dir", state)
	require.Equal(t, exitOK, st.run(t), st.stderr.String())
	assert.Contains(t, st.stdout.String(), "0 of 0 nodes alive")

	again := rtrain(t, "start", "--head", "--host", "127.0.0.1", "--port", "0", "--state-dir", state)
	assert.Equal(t, exitUsage, again.run(t))
	assert.Contains(t, again.stderr.String(), fmt.Sprintf("a head already runs here (pid %d)", pid))

	stop := rtrain(t, "stop", "--state-dir", state)
	require.Equal(t, exitOK, stop.run(t), stop.stderr.String())
	assert.Contains(t, stop.stdout.String(), fmt.Sprintf("stopped the head (pid %d)", pid))
	_, ok = livePid(filepath.Join(state, "head.pid"))
	assert.False(t, ok)
	assert.True(t, exited(pid), "the daemon is gone")
}

// An agent whose head cannot be reached is stopped when rtrain start gives
// up on it, not left retrying in the background; two agents with their own
// state directories get their own data directories.
func TestStartGivesUpOnAnUnreachableHead(t *testing.T) {
	state := t.TempDir()
	start := rtrain(t, "start", "--address", "127.0.0.1:1", "--token", "t", "--ready-timeout", "2s", "--state-dir", state)
	assert.Equal(t, exitFailed, start.run(t))
	assert.Contains(t, start.stderr.String(), "the agent was not up after 2s and was stopped")
	assert.Contains(t, start.stderr.String(), "cannot reach it")
	assert.NotContains(t, strings.TrimSpace(start.stderr.String()), "\n", "one line")
	pid, ok := livePid(filepath.Join(state, "agent.pid"))
	assert.False(t, ok, "the agent daemon (pid %d) still runs", pid)
	assert.DirExists(t, filepath.Join(state, "agent-data"), "the data directory follows the state directory")
}

// rtrain start refuses to start a second agent on one state directory,
// in a sentence: it said "a agent already runs here".
func TestStartRefusesASecondAgent(t *testing.T) {
	state := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(state, "agent.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600))
	start := rtrain(t, "start", "--address", "127.0.0.1:1", "--token", "t", "--state-dir", state)
	assert.Equal(t, exitUsage, start.run(t))
	assert.Contains(t, start.stderr.String(), fmt.Sprintf("an agent already runs here (pid %d); `rtrain stop` stops it", os.Getpid()))
}

// exited reports whether pid has ended: gone, or a zombie its new parent
// has yet to reap.
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// Plain TCP is asked for by name, and a head that serves it beyond
// loopback says what that means.
func TestInsecureHeadWarns(t *testing.T) {
	state := t.TempDir()
	start := rtrain(t, "start", "--head", "--insecure", "--port", "0", "--dashboard-port", "-1", "--state-dir", state)
	start.cmd.Env = append(start.cmd.Env, auth.TokenEnv+"=")
	require.Equal(t, exitOK, start.run(t), start.stderr.String())
	t.Cleanup(func() { _ = rtrain(t, "stop", "--state-dir", state).run(t) })
	out := start.stdout.String()
	assert.Contains(t, out, "warning: --insecure: the cluster token and all traffic cross the network in clear on every interface")
	assert.Regexp(t, `cluster token: [0-9a-f]{48}\n`, out, "no CA, so a bare token")
	assert.NoDirExists(t, filepath.Join(state, "tls"))

	both := rtrain(t, "start", "--head", "--insecure", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--state-dir", t.TempDir())
	assert.Equal(t, exitUsage, both.run(t))
	assert.Contains(t, both.stderr.String(), "give one or the other")
}

// `rtrain start --head --with-agent` is a one-node cluster in one process:
// its node is there, runs a job, and goes with the head.
func TestStartHeadWithAgent(t *testing.T) {
	state := t.TempDir()
	start := rtrain(t, "start", "--head", "--with-agent", "--host", "127.0.0.1", "--port", "0", "--dashboard-port", "-1", "--num-cpus", "2", "--state-dir", state)
	require.Equal(t, exitOK, start.run(t), start.stderr.String())
	assert.Contains(t, start.stdout.String(), "(--with-agent)")
	pid, ok := livePid(filepath.Join(state, "head.pid"))
	require.True(t, ok, "the daemon runs")

	st := rtrain(t, "status", "--state-dir", state)
	require.Equal(t, exitOK, st.run(t), st.stderr.String())
	assert.Contains(t, st.stdout.String(), "1 of 1 nodes alive")

	fit := rtrain(t, "fit", "--address", "auto", "--state-dir", state, "--workers", "2", "--group", "sweep-1", "--name", "trial-1", "train_rtrain.py")
	fit.cmd.Dir = repo(t, "examples")
	require.Equal(t, exitOK, fit.run(t), fit.stderr.String())
	assert.Contains(t, fit.stderr.String(), "succeeded")

	// A group's jobs: listed together, stopped together.
	hold := rtrain(t, "fit", "--address", "auto", "--state-dir", state, "--no-wait", "--group", "sweep-1", "--name", "trial-2", "hold.py")
	hold.cmd.Dir = repo(t, "cmd", "rtrain", "testdata")
	require.Equal(t, exitOK, hold.run(t), hold.stderr.String())
	other := rtrain(t, "fit", "--address", "auto", "--state-dir", state, "--workers", "1", "--name", "alone", "hello.py")
	other.cmd.Dir = repo(t, "cmd", "rtrain", "testdata")
	require.Equal(t, exitOK, other.run(t), other.stderr.String())
	stopGroup := rtrain(t, "stop", "--state-dir", state, "--group", "sweep-1")
	require.Equal(t, exitOK, stopGroup.run(t), stopGroup.stderr.String())
	assert.Contains(t, stopGroup.stdout.String(), "(trial-2)")
	assert.NotContains(t, stopGroup.stdout.String(), "trial-1", "an ended job is left alone")
	var jobs []jobJSON
	require.Eventually(t, func() bool {
		list := rtrain(t, "jobs", "--state-dir", state, "--group", "sweep-1", "-o", "json")
		if list.run(t) != exitOK || json.Unmarshal(list.stdout.Bytes(), &jobs) != nil || len(jobs) != 2 {
			return false
		}
		return jobs[1].State == "CANCELLED"
	}, time.Minute, 200*time.Millisecond, "trial-2 is cancelled: %+v", jobs)
	assert.Equal(t, []string{"trial-1", "trial-2"}, []string{jobs[0].Name, jobs[1].Name}, "only the group's jobs")
	assert.Equal(t, "sweep-1", jobs[0].Group)
	table := rtrain(t, "jobs", "--state-dir", state)
	require.Equal(t, exitOK, table.run(t), table.stderr.String())
	assert.Regexp(t, `JOB\s+GROUP\s+NAME`, table.stdout.String())
	assert.Regexp(t, `\s-\s+alone\s`, table.stdout.String(), "a job of no group")

	stop := rtrain(t, "stop", "--state-dir", state)
	require.Equal(t, exitOK, stop.run(t), stop.stderr.String())
	assert.True(t, exited(pid), "the daemon is gone, its agent with it")
}
