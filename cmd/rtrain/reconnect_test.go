package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a process's output, read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// `rtrain logs -f` and `rtrain fit --address` follow a job across its
// head's crash and restart: they say they lost the head and reconnected,
// print no line twice, and exit with the job's outcome as the restarted
// head has it (the head of today restarts without the job's events and
// marks it lost).
func TestFollowersFollowAJobAcrossAHeadRestart(t *testing.T) {
	for _, tt := range []struct {
		name string
		// follow is the follower's command line, given the cluster.
		follow func(t *testing.T, c *testCluster) []string
	}{
		{"logs -f", func(t *testing.T, c *testCluster) []string {
			out, errs, code := c.run(c.head, "fit", "--no-wait", "--workers", "1", "--name", "held", "testdata/hold.py")
			require.Equal(t, exitOK, code, errs)
			job := regexp.MustCompile(`submitted job (\S+)`).FindStringSubmatch(out)
			require.NotNil(t, job, out)
			c.waitJob(job[1], "RUNNING")
			return []string{"logs", "-f", job[1]}
		}},
		{"fit", func(*testing.T, *testCluster) []string {
			return []string{"fit", "--workers", "1", "--name", "held", "testdata/hold.py"}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, 1)
			args := tt.follow(t, c)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			follower := c.head.Enter(ctx, os.Args[0], args...)
			follower.Env = c.env(t.TempDir())
			follower.Dir = repo(t, "cmd", "rtrain")
			var stdout, stderr lockedBuffer
			follower.Stdout, follower.Stderr = &stdout, &stderr
			require.NoError(t, follower.Start())
			done := make(chan struct{})
			go func() { _ = follower.Wait(); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			deadline := time.Now().Add(time.Minute)
			for !strings.Contains(stdout.String(), "holding") {
				require.True(t, time.Now().Before(deadline), "%v printed no line; stderr: %s", args, stderr.String())
				time.Sleep(20 * time.Millisecond)
			}

			head := c.daemons[c.head.Name()]
			require.NoError(t, head.Process.Kill())
			_ = head.Wait()
			c.daemon(c.head, "head", "start", "--head", "--block", "--host", c.head.Addr(), "--port", c.port,
				"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s")
			<-done
			require.NoError(t, ctx.Err(), "%v hung; stderr:\n%s", args, stderr.String())

			assert.Equal(t, exitFailed, follower.ProcessState.ExitCode(), stderr.String())
			assert.Equal(t, 1, strings.Count(stdout.String(), "holding"), "no line twice:\n%s", stdout.String())
			assert.Equal(t, 1, strings.Count(stderr.String(), "lost the head"), "once an outage:\n%s", stderr.String())
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			require.GreaterOrEqual(t, len(lines), 3, stderr.String())
			lines = lines[len(lines)-3:]
			assert.True(t, strings.HasPrefix(lines[0], "rtrain: warning: lost the head at "+c.addr()+" ("), lines[0])
			assert.True(t, strings.HasSuffix(lines[0], "); reconnecting"), lines[0])
			assert.Equal(t, "rtrain: warning: reconnected to the head at "+c.addr(), lines[1])
			assert.Contains(t, lines[2], "the head restarted while the job was RUNNING")
		})
	}
}
