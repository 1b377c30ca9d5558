package etcdserver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/rtrain/rtrain/internal/etcdserver"
	"github.com/rtrain/rtrain/internal/netns"
)

// probeEnv makes the test binary a probe instead of running tests: it
// asks the etcd at that URL for /health and exits 0 if it is healthy. The
// netns test runs it inside the namespace, where etcd is reachable.
const probeEnv = "ETCDSERVER_TEST_PROBE"

func TestMain(m *testing.M) {
	if url := os.Getenv(probeEnv); url != "" {
		if err := probe(url); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func probe(url string) error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/health: %s", url, resp.Status)
	}
	return nil
}

// start is what testutil.Etcd does, without importing it: that package
// wraps this one.
func start(t *testing.T, opts etcdserver.Options) *etcdserver.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping a real etcd server in -short mode")
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := etcdserver.Start(ctx, opts)
	if errors.Is(err, etcdserver.ErrNoBinary) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func client(t *testing.T, s *etcdserver.Server) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func refuses(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections", addr)
	}
}

func get(t *testing.T, c *clientv3.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, key)
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func TestRestartKeepsDataAndAddress(t *testing.T) {
	s := start(t, etcdserver.Options{})
	require.True(t, strings.HasPrefix(s.Addr(), "127.0.0.1:"), "Addr = %s", s.Addr())
	require.Equal(t, []string{"http://" + s.Addr()}, s.Endpoints())
	c := client(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Put(ctx, "k", "v1")
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		down func()
	}{
		{"kill", s.Kill},
		{"stop", s.Stop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pid := s.Pid()
			require.NotZero(t, pid)
			tc.down()
			require.Zero(t, s.Pid(), "Pid after %s", tc.name)
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				t.Errorf("etcd %d still there after %s", pid, tc.name)
			}
			refuses(t, s.Addr())
			tc.down() // a second time does nothing

			require.NoError(t, s.Restart(ctx))
			// The same client finds the same server, with what it had.
			require.Equal(t, "v1", get(t, c, "k"))
		})
	}

	// Restart of a running server kills it first.
	pid := s.Pid()
	require.NoError(t, s.Restart(ctx))
	require.NotEqual(t, pid, s.Pid())
	require.Equal(t, "v1", get(t, c, "k"))
	require.Contains(t, s.Log(), "serving client traffic")

	s.Close()
	s.Close()
	refuses(t, s.Addr())
	require.Error(t, s.Restart(ctx), "Restart after Close")
}

func TestTwoServersApart(t *testing.T) {
	a, b := start(t, etcdserver.Options{}), start(t, etcdserver.Options{})
	require.NotEqual(t, a.Addr(), b.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := client(t, a).Put(ctx, "k", "a")
	require.NoError(t, err)
	require.Equal(t, "", get(t, client(t, b), "k"))
}

func TestStartNeedsDir(t *testing.T) {
	if etcdserver.Binary() == "" {
		t.Skip("no etcd")
	}
	_, err := etcdserver.Start(context.Background(), etcdserver.Options{})
	require.ErrorContains(t, err, "Dir")
}

// TestCommand runs etcd through a Command hook, as a netns test does,
// which makes readiness rest on etcd's log alone.
func TestCommand(t *testing.T) {
	var called []string
	s := start(t, etcdserver.Options{
		Name: "wrapped",
		Command: func(ctx context.Context, name string, args ...string) *exec.Cmd {
			called = append(called, name)
			// env replaces itself with etcd, as ip netns exec does.
			return exec.CommandContext(ctx, "env", append([]string{name}, args...)...)
		},
	})
	require.Equal(t, []string{etcdserver.Binary()}, called)
	require.NoError(t, probe(s.ClientURL()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, s.Restart(ctx))
	require.Len(t, called, 2)
	require.NoError(t, probe(s.ClientURL()))
}

// TestNetns runs etcd in a network namespace on the host's address, where
// only processes in the namespaces of the Net reach it.
func TestNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping a real etcd server in -short mode")
	}
	h := netns.New(t, 1).Hosts()[0]
	s := start(t, etcdserver.Options{Host: h.Addr(), Command: h.Command})
	require.Equal(t, "http://"+h.Addr()+":", s.ClientURL()[:len("http://"+h.Addr()+":")])
	self, err := os.Executable()
	require.NoError(t, err)
	check := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := h.Command(ctx, self, "-test.run=^$")
		cmd.Env = append(os.Environ(), probeEnv+"="+s.ClientURL())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "probe in %s: %s", h.Name(), out)
	}
	check()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.Kill()
	require.NoError(t, s.Restart(ctx))
	check()
}
