package netns_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rtrain/rtrain/internal/netns"
)

// The test binary doubles as every program the tests run in a host
// (Nomad's pattern): with childEnv set, TestMain plays the role named by
// its first argument instead of running tests, so nothing needs
// installing.
const childEnv = "RTRAIN_NETNS_CHILD"

// failEnv makes TestFailingChild run: it builds a Net and fails, for
// TestCleanupAfterFailure to inspect from outside.
const failEnv = "RTRAIN_NETNS_FAIL"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

// child plays a role and returns the exit code. Roles:
//
//	serve ADDR      listen on ADDR:0, print "port N", echo one line per
//	                connection, forever.
//	dial ADDR:PORT  send a line, print the echo; exit 3 if the connection
//	                fails within a second.
//	resolve NAME    print NAME's addresses, one a line.
//	sleep           print "pid N", then sleep for an hour.
func child(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "child: no role")
		return 2
	}
	switch args[0] {
	case "serve":
		l, err := net.Listen("tcp", net.JoinHostPort(args[1], "0"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "listen:", err)
			return 1
		}
		fmt.Printf("port %d\n", l.Addr().(*net.TCPAddr).Port)
		for {
			c, err := l.Accept()
			if err != nil {
				return 1
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			_, _ = io.WriteString(c, "echo "+line)
			_ = c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", args[1], time.Second)
		if err != nil {
			fmt.Println("error:", err)
			return 3
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "hello\n"); err != nil {
			fmt.Println("error:", err)
			return 3
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println("error:", err)
			return 3
		}
		fmt.Print(line)
		return 0
	case "resolve":
		addrs, err := net.LookupHost(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "resolve:", err)
			return 1
		}
		fmt.Println(strings.Join(addrs, "\n"))
		return 0
	case "sleep":
		fmt.Printf("pid %d\n", os.Getpid())
		time.Sleep(time.Hour)
		return 0
	}
	fmt.Fprintln(os.Stderr, "child: unknown role", args[0])
	return 2
}

// run runs role in h and returns its output and error.
func run(t *testing.T, h *netns.Host, role ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := h.Command(ctx, exe(t), role...)
	cmd.Env = childEnviron()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// start starts role in h and returns it with its first line of output.
func start(ctx context.Context, t *testing.T, h *netns.Host, role ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := h.Command(ctx, exe(t), role...)
	cmd.Env = childEnviron()
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "first line of %v", role)
	return cmd, strings.TrimSpace(line)
}

// childEnviron is the environment of a child: ours, with childEnv set and
// without the race detector's one-second pause at exit.
func childEnviron() []string {
	return append(os.Environ(), childEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

func exe(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	require.NoError(t, err)
	return p
}

func TestNetwork(t *testing.T) {
	n := netns.New(t, 3)
	hosts := n.Hosts()
	require.Len(t, hosts, 3)
	for i, h := range hosts {
		assert.Equal(t, "eth0", h.Iface(), "host %d interface", i)
		want := n.Prefix().Addr().As4()
		want[3] = byte(i + 1)
		assert.Equal(t, net.IP(want[:]).String(), h.Addr(), "host %d address", i)
	}

	server, line := start(t.Context(), t, hosts[0], "serve", hosts[0].Addr())
	port := strings.TrimPrefix(line, "port ")
	target := net.JoinHostPort(hosts[0].Addr(), port)

	t.Run("bytes cross", func(t *testing.T) {
		for _, h := range hosts[1:] {
			out, err := run(t, h, "dial", target)
			require.NoError(t, err, "dial from %s: %s", h.Name(), out)
			assert.Equal(t, "echo hello\n", out)
		}
	})

	t.Run("names resolve", func(t *testing.T) {
		out, err := run(t, hosts[2], "resolve", hosts[0].Name())
		require.NoError(t, err, out)
		assert.Equal(t, hosts[0].Addr(), strings.TrimSpace(out))
	})

	t.Run("link down", func(t *testing.T) {
		require.NoError(t, hosts[0].LinkDown())
		began := time.Now()
		out, err := run(t, hosts[1], "dial", target)
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "dial to a host whose link is down: %s", out)
		assert.Equal(t, 3, exit.ExitCode(), out)
		assert.Less(t, time.Since(began), 10*time.Second, "a dial to a cut-off host should fail within its timeout")

		require.NoError(t, hosts[0].LinkUp())
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err = run(t, hosts[1], "dial", target)
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		require.NoError(t, err, "dial after LinkUp: %s", out)
	})

	require.NoError(t, n.Close())
	err := server.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the server should have been killed by Close")
	assertGone(t, n.Bridge(), n.Namespaces())
	require.NoError(t, n.Close(), "a second Close")
}

func TestNetsDoNotCollide(t *testing.T) {
	a, b := netns.New(t, 1), netns.New(t, 1)
	assert.NotEqual(t, a.Prefix(), b.Prefix())
	assert.NotEqual(t, a.Bridge(), b.Bridge())
	assert.NotEqual(t, a.Hosts()[0].Name(), b.Hosts()[0].Name())
}

// TestFailingChild is run by TestCleanupAfterFailure: it starts a process
// in each host of a Net and fails.
func TestFailingChild(t *testing.T) {
	if os.Getenv(failEnv) == "" {
		t.Skip("run by TestCleanupAfterFailure")
	}
	n := netns.New(t, 2)
	fmt.Printf("bridge %s\n", n.Bridge())
	for _, h := range n.Hosts() {
		// Not t.Context(), which would kill it before the cleanup: the
		// cleanup is what is tested.
		_, line := start(context.Background(), t, h, "sleep")
		fmt.Printf("ns %s\n%s\n", h.Name(), line)
	}
	t.Fatal("failing on purpose")
}

func TestCleanupAfterFailure(t *testing.T) {
	netns.New(t, 1) // for the skip, or failure, where netns cannot run
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe(t), "-test.run=^TestFailingChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), failEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the child test should fail:\n%s", out)
	require.Contains(t, string(out), "failing on purpose")
	require.NotContains(t, string(out), "netns cleanup", "cleanup errors")

	var bridge string
	var names []string
	var pids []int
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		switch f[0] {
		case "bridge":
			bridge = f[1]
		case "ns":
			names = append(names, f[1])
		case "pid":
			pid, err := strconv.Atoi(f[1])
			require.NoError(t, err)
			pids = append(pids, pid)
		}
	}
	require.Len(t, names, 2, "namespaces in:\n%s", out)
	require.Len(t, pids, 2, "pids in:\n%s", out)
	assertGone(t, bridge, names)
	for _, pid := range pids {
		// Killed, it may still wait to be reaped by init, which adopted
		// it when the child test binary exited.
		assert.True(t, dead(pid), "process %d should be gone", pid)
	}
}

// dead reports whether pid is gone or a zombie.
func dead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// assertGone checks that the bridge and namespaces no longer exist.
func assertGone(t *testing.T, bridge string, names []string) {
	t.Helper()
	list, err := exec.Command("ip", "netns", "list").Output()
	require.NoError(t, err)
	for _, name := range names {
		assert.NotContains(t, string(list), name, "ip netns list")
		_, err := os.Stat(filepath.Join("/etc/netns", name))
		assert.True(t, errors.Is(err, os.ErrNotExist), "/etc/netns/%s should be gone: %v", name, err)
	}
	links, err := exec.Command("ip", "-o", "link", "show").Output()
	require.NoError(t, err)
	id := strings.TrimPrefix(bridge, "rtbr")
	require.NotEmpty(t, id)
	assert.NotContains(t, string(links), bridge, "ip link show")
	assert.NotContains(t, string(links), "rtv"+id, "ip link show")
}
