package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
// head's crash and restart, or its graceful stop (the head hands its jobs
// off then) and restart: they say once that they lost the head and once
// that they reconnected, print every line of the job once, and exit with
// its outcome. The head that adopts the job numbers its events anew and
// serves again some the followers had; they tell those by their seq.
func TestFollowersFollowAJobAcrossAHeadRestart(t *testing.T) {
	job := []string{"--workers", "1", "--name", "steady", "testdata/steady.py", "12", "4", "0.3"}
	for _, tt := range []struct {
		name string
		// follow is the follower's command line, given the cluster.
		follow func(t *testing.T, c *testCluster) []string
		// stop is how the head ends: a crash, or a graceful stop, after
		// which it hands its jobs off rather than cancel them.
		stop syscall.Signal
	}{
		{"logs -f", func(t *testing.T, c *testCluster) []string {
			out, errs, code := c.run(c.head, append([]string{"fit", "--no-wait"}, job...)...)
			require.Equal(t, exitOK, code, errs)
			id := regexp.MustCompile(`submitted job (\S+)`).FindStringSubmatch(out)
			require.NotNil(t, id, out)
			c.waitJob(id[1], "RUNNING")
			return []string{"logs", "-f", id[1]}
		}, syscall.SIGKILL},
		{"fit", func(*testing.T, *testCluster) []string { return append([]string{"fit"}, job...) }, syscall.SIGKILL},
		{"fit, the head stopped by SIGTERM", func(*testing.T, *testCluster) []string { return append([]string{"fit"}, job...) }, syscall.SIGTERM},
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
			for !regexp.MustCompile(`step 5\b`).MatchString(stdout.String()) {
				require.True(t, time.Now().Before(deadline), "%v printed no step 5; stderr: %s", args, stderr.String())
				time.Sleep(20 * time.Millisecond)
			}

			head := c.daemons[c.head.Name()]
			require.NoError(t, head.Process.Signal(tt.stop))
			_ = head.Wait()
			c.daemon(c.head, "head", "start", "--head", "--block", "--host", c.head.Addr(), "--port", c.port,
				"--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s")
			<-done
			require.NoError(t, ctx.Err(), "%v hung; stderr:\n%s", args, stderr.String())

			assert.Equal(t, exitOK, follower.ProcessState.ExitCode(), stderr.String())
			for step := 1; step <= 12; step++ {
				n := len(regexp.MustCompile(`step `+strconv.Itoa(step)+`\b`).FindAllString(stdout.String(), -1))
				assert.Equal(t, 1, n, "step %d's line, once:\n%s", step, stdout.String())
			}
			assert.Equal(t, 1, strings.Count(stdout.String(), "param_sum="), stdout.String())
			warnings := regexp.MustCompile(`(?m)^rtrain: warning: .*$`).FindAllString(stderr.String(), -1)
			require.Len(t, warnings, 2, "lost, and reconnected, once each:\n%s", stderr.String())
			assert.True(t, strings.HasPrefix(warnings[0], "rtrain: warning: lost the head at "+c.addr()+" ("), warnings[0])
			assert.True(t, strings.HasSuffix(warnings[0], "); reconnecting"), warnings[0])
			assert.Equal(t, "rtrain: warning: reconnected to the head at "+c.addr(), warnings[1])
		})
	}
}
