package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/trainer"
)

// The test binary is rtrain itself when RTRAIN_TEST_AS_CLI is set, so these
// tests run the real command line, exit codes and signals included, without
// a separate build.
func TestMain(m *testing.M) {
	if launcher.RunReaperIfAsked() {
		return
	}
	if b := os.Getenv(makeBucketEnv); b != "" {
		os.Exit(makeBucketHere(b))
	}
	if os.Getenv("RTRAIN_TEST_AS_CLI") == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(isolated{m})
}

// isolated runs the tests in their own cgroup parent, which it removes
// before goleak looks for goroutines the in-process clients left behind.
type isolated struct{ m *testing.M }

func (i isolated) Run() int { return testutil.RunIsolated(i.m, &cgroupParent) }

// cgroupParent holds every cgroup this package's jobs make.
var cgroupParent string

type cli struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	marker         string
}

// rtrain prepares `rtrain args...` with a python that has torch and results
// in a temporary directory.
func rtrain(t *testing.T, args ...string) *cli {
	t.Helper()
	c := &cli{marker: testutil.Marker(t)}
	c.cmd = exec.Command(os.Args[0], args...)
	c.cmd.Env = append(os.Environ(), "RTRAIN_TEST_AS_CLI=1", c.marker, "HOME="+t.TempDir())
	if py := os.Getenv("RTRAIN_TEST_PYTHON"); py != "" {
		c.cmd.Env = append(c.cmd.Env, "RTRAIN_PYTHON="+py)
	} else {
		c.cmd.Env = append(c.cmd.Env, "RTRAIN_PYTHON=/usr/bin/python3")
	}
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	t.Cleanup(func() {
		testutil.NoProcesses(t, c.marker, 5*time.Second)
		testutil.NoCgroups(t, cgroupParent, 5*time.Second)
	})
	return c
}

func (c *cli) run(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	require.NoError(t, c.cmd.Start())
	go func() { done <- c.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		_ = c.cmd.Process.Kill()
		<-done
		t.Fatalf("rtrain hung; stderr:\n%s", c.stderr.String())
	}
	return c.cmd.ProcessState.ExitCode()
}

func repo(t *testing.T, parts ...string) string {
	return filepath.Join(append([]string{testutil.RepoRoot(t)}, parts...)...)
}

func TestUsageErrorsAreOneLine(t *testing.T) {
	testutil.Python(t)
	noTorch := filepath.Join(t.TempDir(), "python3")
	require.NoError(t, os.WriteFile(noTorch, []byte("#!/bin/sh\nexec /usr/bin/python3 -S \"$@\"\n"), 0o755))
	script := repo(t, "examples", "train_rtrain.py")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no script", []string{"fit"}, "no script given"},
		{"missing script", []string{"fit", "missing.py"}, "script missing.py does not exist"},
		{"zero workers", []string{"fit", "--workers", "0", script}, "--workers must be at least 1, got 0"},
		{"negative workers", []string{"fit", "--workers", "-1", script}, "--workers must be at least 1, got -1"},
		{"unknown flag", []string{"fit", "--wrokers", "2", script}, "unknown flag: --wrokers"},
		{"gpu without gpus", []string{"fit", "--workers", "4", "--gpu", "--num-gpus", "0", script}, "asked 4 GPUs, this node has 0"},
		{"no torch", []string{"fit", "--python", noTorch, script}, "cannot import torch"},
		{"syntax error", []string{"fit", repo(t, "trainer", "testdata", "syntax_error.py")}, "syntax error at line 3"},
		{"conflicting gpu flags", []string{"fit", "--gpu", "--gpus-per-worker", "2", script}, "--gpu means one GPU per worker"},
		{"unknown command", []string{"fitt"}, `unknown command "fitt"`},
		{"cpu as a custom resource", []string{"fit", "--resources-per-worker", "CPU=1", script}, `--resources-per-worker: "CPU" is not a custom resource: CPUs, GPUs and memory have flags of their own`},
		{"custom resource not json", []string{"fit", "--resources", `{"licence": two}`, script}, `--resources: custom resources "{\"licence\": two}": not a JSON object of numbers`},
		{"custom resource nowhere", []string{"fit", "--resources-per-worker", "licence=1", script}, `asked 1 of custom resource "licence", this node has 0`},
		{"too little of a custom resource", []string{"fit", "-n", "3", "--resources", "licence=2", "--resources-per-worker", "licence=1", script}, `asked 3 of custom resource "licence", this node has 2`},
		{"embedded node flags on a cluster", []string{"fit", "--address", "127.0.0.1:1", "--resources", "licence=1", script}, "--resources describes this machine's embedded node; on a cluster each agent says what it offers (rtrain start --resources)"},
		{"param without a value", []string{"fit", "--param", "lr", script}, `--param "lr": want KEY=VALUE`},
		{"param twice", []string{"fit", "--param", "lr=1", "--param", "lr=2", script}, "--param lr is given twice; give each key once"},
		{"metric without mode", []string{"fit", "--metric", "score", script}, "--metric score needs --mode min or --mode max: whether a lower or a higher score is better"},
		{"bad mode", []string{"fit", "--metric", "score", "--mode", "best", script}, `--mode "best": want min or max`},
		{"custom resources on a head", []string{"start", "--head", "--resources", "licence=1"}, "--resources is what an agent's node offers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rtrain(t, tt.args...)
			code := c.run(t)
			assert.Equal(t, exitUsage, code, "stderr: %s", c.stderr.String())
			// Informational lines ("rtrain: python ...") may come first; the
			// error is the last line, alone.
			lines := strings.Split(strings.TrimSpace(c.stderr.String()), "\n")
			msg := lines[len(lines)-1]
			assert.Contains(t, msg, tt.want)
			assert.True(t, strings.HasPrefix(msg, "rtrain: "), "message %q starts with rtrain:", msg)
			assert.LessOrEqual(t, len(lines), 2, "stderr: %q", lines)
			assert.NotContains(t, c.stderr.String(), "goroutine")
		})
	}
}

func TestFitStreamsRanksAndSummarises(t *testing.T) {
	testutil.Python(t)
	c := rtrain(t, "fit", "--workers", "4", repo(t, "examples", "train_rtrain.py"), "--epochs", "2")
	require.Equal(t, exitOK, c.run(t), "stderr: %s", c.stderr.String())
	out, errs := c.stdout.String(), c.stderr.String()
	assert.Contains(t, out, "[report] epoch=0 loss=")
	assert.Contains(t, out, "[report] epoch=1 loss=")
	assert.Contains(t, errs, "rtrain: python /usr/bin/python3 (torch ")
	assert.Contains(t, errs, "succeeded in")
	assert.Contains(t, errs, "4 workers, 2 reports")

	c = rtrain(t, "fit", "-n", "2", repo(t, "examples", "train_torchrun.py"), "--", "--epochs", "1")
	require.Equal(t, exitOK, c.run(t), "stderr: %s", c.stderr.String())
	assert.Contains(t, c.stdout.String(), "[rank 0] epoch 0 loss")
}

func TestFailedJobNamesTheRootCause(t *testing.T) {
	testutil.Python(t)
	c := rtrain(t, "fit", "--workers", "3", "--env", "FAIL_RANK=1", repo(t, "trainer", "testdata", "fail_rank.py"))
	assert.Equal(t, exitFailed, c.run(t))
	errs := c.stderr.String()
	// Rank 1 may still be exiting when a peer it brought down has exited
	// and rtrain stops it: it is the cause either way.
	assert.Regexp(t, `root cause: rank 1 on local \(pid \d+\) (exit code 1|killed by signal 15 \(terminated\) as rtrain stopped it): ValueError: boom from rank 1`, errs)
	assert.Contains(t, errs, "Traceback (most recent call last)")
	assert.Regexp(t, `(stopped by rtrain after the failure|also failed): rank (0|2)`, errs)

	// Made to linger in its exit until a peer it brought down has exited
	// and rtrain stops it, rank 1 is still the cause, and says so.
	c = rtrain(t, "fit", "--workers", "3", "--env", "FAIL_RANK=1", "--env", "FAIL_SLOW_EXIT=1", repo(t, "trainer", "testdata", "fail_rank.py"))
	assert.Equal(t, exitFailed, c.run(t))
	assert.Regexp(t, `root cause: rank 1 on local \(pid \d+\) killed by signal 15 \(terminated\) as rtrain stopped it: ValueError: boom from rank 1`, c.stderr.String())
}

// waitFor reads r until a line contains want.
func waitFor(t *testing.T, r io.Reader, want string) {
	t.Helper()
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				close(found)
				_, _ = io.Copy(io.Discard, r)
				return
			}
		}
	}()
	select {
	case <-found:
	case <-time.After(2 * time.Minute):
		t.Fatalf("no %q from rtrain", want)
	}
}

func TestKilledRtrainLeavesNoWorker(t *testing.T) {
	testutil.Python(t)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			c := rtrain(t, "fit", "--workers", "2", repo(t, "cmd", "rtrain", "testdata", "hold.py"))
			pr, pw := io.Pipe()
			c.cmd.Stdout = pw
			require.NoError(t, c.cmd.Start())
			waitFor(t, pr, "[rank 1] holding")
			require.NotEmpty(t, testutil.Processes(c.marker))
			require.NoError(t, c.cmd.Process.Signal(sig))
			err := c.cmd.Wait()
			_ = pw.Close()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee)
			if sig == syscall.SIGKILL {
				assert.True(t, ee.ProcessState.Sys().(syscall.WaitStatus).Signaled())
			} else {
				assert.Equal(t, exitCancelled, ee.ExitCode(), "stderr: %s", c.stderr.String())
				assert.Contains(t, c.stderr.String(), "cancelled")
			}
			testutil.NoProcesses(t, c.marker, 5*time.Second)
		})
	}
}

func TestVersion(t *testing.T) {
	c := rtrain(t, "version")
	require.Equal(t, exitOK, c.run(t))
	assert.True(t, strings.HasPrefix(c.stdout.String(), "rtrain "), c.stdout.String())
}

func TestCompletion(t *testing.T) {
	c := rtrain(t, "completion", "bash")
	require.Equal(t, exitOK, c.run(t))
	assert.Contains(t, c.stdout.String(), "bash completion")
}

// The live line counts checkpoints in words that agree: it said "1
// checkpoints".
func TestStatusLineCountsCheckpoints(t *testing.T) {
	var out strings.Builder
	s, err := newStatusLine("tty", &out)
	require.NoError(t, err)
	s.update(trainer.Event{Type: trainer.EventState, State: trainer.StateRunning})
	s.update(trainer.Event{Type: trainer.EventWorkerStarted})
	for _, want := range []string{"1 checkpoint", "2 checkpoints"} {
		s.update(trainer.Event{Type: trainer.EventCheckpoint, Checkpoint: &trainer.Checkpoint{}})
		out.Reset()
		s.draw()
		assert.Equal(t, "rtrain: running, 1 up | "+want, out.String())
	}
}

func TestLiveStatusLine(t *testing.T) {
	testutil.Python(t)
	c := rtrain(t, "fit", "--workers", "2", "--progress", "tty", repo(t, "examples", "train_rtrain.py"), "--epochs", "2")
	require.Equal(t, exitOK, c.run(t), "stderr: %s", c.stderr.String())
	errs := c.stderr.String()
	assert.Contains(t, errs, "rtrain: running, 2 up | report 2: epoch=1 loss=")
	assert.Contains(t, errs, "| 2 checkpoints at ")
	assert.Contains(t, errs, "\r\x1b[2K", "the line is cleared before each output line")
	// Output lines stay whole: the status line is cleared, not mixed in.
	assert.Contains(t, c.stdout.String(), "[report] epoch=1 loss=")

	c = rtrain(t, "fit", "--workers", "1", "--progress", "plain", repo(t, "cmd", "rtrain", "testdata", "hello.py"))
	require.Equal(t, exitOK, c.run(t))
	assert.NotContains(t, c.stderr.String(), "\x1b[")
}
