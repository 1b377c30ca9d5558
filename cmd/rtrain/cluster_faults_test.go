package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
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

	"github.com/rtrain/rtrain/internal/netns"
)

// Node loss, elastic jobs and fencing on a real netns cluster.

func TestClusterJobFailsWhenANodeIsLost(t *testing.T) {
	c := newTestCluster(t, 2)
	hosts := c.net.Hosts()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fit := c.head.Enter(ctx, os.Args[0], "fit", "--workers", "4", "--cpus-per-worker", "1", "--placement", "SPREAD", "testdata/hold.py")
	fit.Env = c.env(t.TempDir())
	fit.Dir = repo(t, "cmd", "rtrain")
	pr, pw := io.Pipe()
	var errs bytes.Buffer
	fit.Stdout, fit.Stderr = pw, &errs
	require.NoError(t, fit.Start())
	waitFor(t, pr, "[rank 3 "+nodeName(hosts[2])+"] holding")

	victim := c.daemons[hosts[2].Name()]
	killed := time.Now()
	require.NoError(t, victim.Process.Kill())
	_ = victim.Wait()
	delete(c.daemons, hosts[2].Name())

	err := fit.Wait()
	_ = pw.Close()
	took := time.Since(killed)
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, errs.String())
	assert.Equal(t, exitFailed, ee.ExitCode(), errs.String())
	assert.Regexp(t, `root cause: rank [23] on `+nodeName(hosts[2])+` .*node `+nodeName(hosts[2])+` lost`, errs.String())
	assert.Contains(t, errs.String(), "stopped by rtrain after the failure")
	t.Logf("job ended %s after its node's agent was killed", took.Round(10*time.Millisecond))
}

// An elastic job (--workers 2:4) loses the node of ranks 2 and 3 after its
// first checkpoint, is placed again on the node left, goes on with two
// workers from the latest checkpoint, and finishes.
func TestClusterElasticJobSurvivesNodeLoss(t *testing.T) {
	for _, how := range []string{"agent killed", "link down", "agent stopped", "drained"} {
		t.Run(how, func(t *testing.T) {
			c := newTestCluster(t, 2)
			hosts := c.net.Hosts()
			dir := exampleDir(t)

			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			// Preemption (a stopped agent, a drain) spends no budget.
			budget := "1"
			if how == "agent stopped" || how == "drained" {
				budget = "0"
			}
			fit := c.head.Enter(ctx, os.Args[0], "fit", "--workers", "2:4", "--cpus-per-worker", "1", "--placement", "SPREAD",
				"--max-failures", budget, "train.py", "--epochs", "6")
			fit.Env = c.env(t.TempDir())
			fit.Dir = dir
			pr, pw := io.Pipe()
			var errs bytes.Buffer
			fit.Stdout, fit.Stderr = pw, &errs
			require.NoError(t, fit.Start())
			out := &bytes.Buffer{}
			seen, read := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(read)
				sc := bufio.NewScanner(pr)
				once := false
				for sc.Scan() {
					out.WriteString(sc.Text() + "\n")
					if !once && strings.HasPrefix(sc.Text(), "[checkpoint]") {
						once = true
						close(seen)
					}
				}
			}()
			select {
			case <-seen:
			case <-ctx.Done():
				t.Fatalf("no checkpoint; stderr:\n%s", errs.String())
			}
			lost := hosts[2]
			switch how {
			case "agent killed":
				require.NoError(t, c.daemons[lost.Name()].Process.Kill())
			case "link down":
				require.NoError(t, lost.LinkDown())
			case "agent stopped":
				require.NoError(t, c.daemons[lost.Name()].Process.Signal(syscall.SIGTERM))
			case "drained":
				_, errs, code := c.run(hosts[1], "drain", nodeName(lost))
				require.Equal(t, exitOK, code, errs)
			}

			err := fit.Wait()
			_ = pw.Close()
			<-read
			require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errs.String())
			e := errs.String()
			assert.Contains(t, e, "starting 4 workers on 2 nodes")
			if budget == "0" {
				assert.Regexp(t, `attempt 1: rank [23] failed: node `+nodeName(lost)+` drained.*preempted: not counted`, e)
			} else {
				assert.Regexp(t, `attempt 1: rank [23] failed: node `+nodeName(lost)+` lost`, e)
			}
			assert.Contains(t, e, "starting 2 workers on 1 node")
			assert.Contains(t, e, "succeeded")
			assert.Contains(t, out.String(), "[report] epoch=5 ")
		})
	}
}

// An elastic job that went on with fewer workers after a node was cut off
// scales back up, at its next checkpoint, once the node is back.
func TestClusterElasticJobScalesBackUp(t *testing.T) {
	c := newTestCluster(t, 2)
	hosts := c.net.Hosts()
	dir := exampleDir(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fit := c.head.Enter(ctx, os.Args[0], "fit", "--workers", "2:4", "--cpus-per-worker", "1", "--placement", "SPREAD",
		"--max-failures", "1", "train.py", "--epochs", "120")
	fit.Env = c.env(t.TempDir())
	fit.Dir = dir
	pr, pw := io.Pipe()
	fit.Stdout, fit.Stderr = pw, pw
	require.NoError(t, fit.Start())
	lines := make(chan string, 1024)
	var errs bytes.Buffer
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	waitLine := func(want string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				require.True(t, ok, "rtrain ended before %q:\n%s", want, errs.String())
				errs.WriteString(l + "\n")
				if strings.Contains(l, want) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q:\n%s", want, errs.String())
			}
		}
	}
	waitLine("starting 4 workers on 2 nodes")
	waitLine("[checkpoint]")
	require.NoError(t, hosts[2].LinkDown())
	waitLine("starting 2 workers on 1 node")
	require.NoError(t, hosts[2].LinkUp())
	waitLine("room for more than 2 workers")
	waitLine("starting 4 workers on 2 nodes")
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for l := range lines {
			errs.WriteString(l + "\n")
		}
	}()
	err := fit.Wait()
	_ = pw.Close()
	<-drained
	require.NoError(t, err, "output:\n%s", errs.String())
	assert.Contains(t, errs.String(), "[report] epoch=119 ")
}

// exampleDir is a working directory holding examples/train_rtrain.py as
// train.py: a small directory to ship to the nodes.
func exampleDir(t *testing.T) string {
	dir := t.TempDir()
	script, err := os.ReadFile(repo(t, "examples", "train_rtrain.py"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "train.py"), script, 0o644))
	return dir
}

// A fixed-size job whose node is lost cannot fit on the node left: its
// restart waits, saying why, until an agent joins again, then finishes.
func TestClusterRestartWaitsForANode(t *testing.T) {
	c := newTestCluster(t, 2)
	hosts := c.net.Hosts()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fit := c.head.Enter(ctx, os.Args[0], "fit", "--workers", "4", "--cpus-per-worker", "1", "--placement", "SPREAD",
		"--max-failures", "1", "train.py", "--epochs", "6")
	fit.Env = c.env(t.TempDir())
	fit.Dir = exampleDir(t)
	pr, pw := io.Pipe()
	fit.Stdout, fit.Stderr = pw, pw
	require.NoError(t, fit.Start())
	var out bytes.Buffer
	read := make(chan struct{})
	waiting := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		seen := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			switch {
			case strings.HasPrefix(sc.Text(), "[checkpoint]") && !seen:
				seen = true
				_ = c.daemons[hosts[2].Name()].Process.Kill()
			case strings.Contains(sc.Text(), "waiting for nodes to join"):
				close(waiting)
			}
		}
	}()
	select {
	case <-waiting:
	case <-ctx.Done():
		t.Fatal("the restart never said it waits for nodes")
	}
	_ = c.daemons[hosts[2].Name()].Wait()
	c.daemon(hosts[2], "agent", "start", "--block", "--address", c.addr(), "--num-cpus", "2", "--node-name", nodeName(hosts[2]))
	err := fit.Wait()
	_ = pw.Close()
	<-read
	require.NoError(t, err, "output:\n%s", out.String())
	o := out.String()
	assert.Contains(t, o, "waiting for nodes to join: asked 4 CPUs, this node has 2")
	assert.Equal(t, 2, strings.Count(o, "starting 4 workers on 2 nodes"), o)
	assert.Contains(t, o, "[report] epoch=5 ")
}

// A rank whose agent froze (SIGSTOP) or was cut off is dead before the
// head starts it again elsewhere: the two copies never run at once.
func TestClusterFencesALostAgentsWorkers(t *testing.T) {
	for _, how := range []string{"agent frozen", "link down"} {
		t.Run(how, func(t *testing.T) {
			c := newTestCluster(t, 2)
			hosts := c.net.Hosts()
			stamps := filepath.Join(t.TempDir(), "stamps")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			fit := c.head.Enter(ctx, os.Args[0], "fit", "--workers", "1", "--cpus-per-worker", "2", "--max-failures", "1", "testdata/stamp.py", stamps)
			fit.Env = c.env(t.TempDir())
			fit.Dir = repo(t, "cmd", "rtrain")
			pr, pw := io.Pipe()
			var errs bytes.Buffer
			fit.Stdout, fit.Stderr = pw, &errs
			require.NoError(t, fit.Start())
			sc := bufio.NewScanner(pr)
			line := ""
			for line == "" && sc.Scan() {
				if strings.Contains(sc.Text(), "] stamping") {
					line = sc.Text()
				}
			}
			go func() { _, _ = io.Copy(io.Discard, pr) }()
			var lost *netns.Host
			for _, h := range hosts[1:] {
				if strings.Contains(line, nodeName(h)+"]") {
					lost = h
				}
			}
			require.NotNil(t, lost, "rank 0's node in %q", line)
			switch how {
			case "agent frozen":
				agent := c.daemons[lost.Name()].Process
				require.NoError(t, agent.Signal(syscall.SIGSTOP))
				t.Cleanup(func() { _ = agent.Signal(syscall.SIGCONT) })
			case "link down":
				require.NoError(t, lost.LinkDown())
				t.Cleanup(func() { _ = lost.LinkUp() })
			}

			err := fit.Wait()
			_ = pw.Close()
			require.NoError(t, err, errs.String())
			b, err := os.ReadFile(stamps)
			require.NoError(t, err)
			var oldLast, newFirst float64
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var attempt, pid int
				var at float64
				_, err := fmt.Sscanf(l, "%d %d %f", &attempt, &pid, &at)
				require.NoError(t, err, l)
				switch {
				case attempt == 0:
					oldLast = max(oldLast, at)
				case newFirst == 0 || at < newFirst:
					newFirst = at
				}
			}
			require.NotZero(t, newFirst, "the rank ran again: %s", b)
			assert.Less(t, oldLast, newFirst, "the old copy of rank 0 ran %.2f s after the new one started", oldLast-newFirst)
			t.Logf("old copy's last line %.2f s before the new copy's first", newFirst-oldLast)
		})
	}
}
