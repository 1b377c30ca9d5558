package cgroup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role, os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

// requireCgroups returns the detected layout, or skips the test where
// there is none usable: not root, or no writable cgroup filesystem. In CI,
// which has both, that is a failure instead.
func requireCgroups(t *testing.T) layout {
	t.Helper()
	why := ""
	l, err := detect()
	switch {
	case os.Geteuid() != 0:
		why = "needs root"
	case err != nil:
		why = err.Error()
	}
	if why != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the cgroup tests: %s", why)
		}
		t.Skip(why)
	}
	return l
}

// variant narrows the detected layout l, so that one host tests the code
// paths of several kinds of host: "legacy" uses only the v1 hierarchies (so
// Kill uses the freezer), "unified" only the cgroup2 one, "ebpf" is l with
// device rules on cgroup2. Empty is l itself. It reports false when this
// host cannot play the variant.
func variant(l layout, name string) (layout, bool) {
	switch name {
	case "":
		return l, true
	case "legacy":
		if len(l.v1) == 0 {
			return l, false
		}
		l.v2Root, l.v2Controllers = "", nil
	case "unified":
		if l.v2Root == "" {
			return l, false
		}
		l.v1, l.v1Root = nil, ""
	case "ebpf":
		if l.v2Root == "" {
			return l, false
		}
		l.assign()
		l.devices = onV2
		return l, true
	default:
		return l, false
	}
	l.assign()
	return l, true
}

// mustVariant is variant for a test, which is skipped where the host
// cannot play it: a hybrid host plays them all.
func mustVariant(t *testing.T, l layout, name string) layout {
	t.Helper()
	v, ok := variant(l, name)
	if !ok {
		t.Skipf("a %s host cannot play the %q variant", l.mode(), name)
	}
	return v
}

// testTop returns a top-level group name for this test alone, and removes
// it in every hierarchy when the test ends, after the test's groups (which
// leave it, as every job leaves "rtrain"). One that cannot be removed is a
// leak, and fails the test.
func testTop(t *testing.T, l layout) string {
	t.Helper()
	top := fmt.Sprintf("rtrain-test-%d-%s", os.Getpid(), strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	t.Cleanup(func() {
		for _, root := range l.roots() {
			dir := filepath.Join(root, top)
			if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
				t.Errorf("left behind %s: %v", dir, err)
			}
		}
	})
	return top
}

// newGroup creates a group under layout l and kills and deletes it when the
// test ends, however it ends.
func newGroup(t *testing.T, l layout, spec Spec) *Group {
	t.Helper()
	if err := spec.validate(); err != nil {
		t.Fatal(err)
	}
	g, err := create(spec, l)
	if err != nil {
		t.Fatalf("create %s: %v", spec.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Kill(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := g.Delete(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return g
}

// child is a copy of the test binary playing a role (see runChild).
type child struct {
	t     *testing.T
	cmd   *exec.Cmd
	out   *os.File // the read end of its stdout, which its descendants share
	lines *bufio.Scanner
	stdin *os.File // the write end of its stdin

	once    sync.Once
	waitErr error
}

// startChild starts role, which joins group path (under layout variant
// variantName) first when path is not empty.
func startChild(t *testing.T, path, variantName, role string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	// Under -race a Go process sleeps a second at exit, waiting for reports
	// from other threads; the children's races would show in their stderr.
	cmd.Env = append(os.Environ(), childEnv+"="+role, variantEnv+"="+variantName,
		"GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	if path != "" {
		cmd.Env = append(cmd.Env, joinEnv+"="+path)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// Every stream is a file, never a buffer: os/exec copies into a buffer
	// from a goroutine that Wait waits for, and a descendant left holding
	// the pipe would hold Wait up.
	stderr, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stdin, cmd.Stderr = outW, inR, stderr
	err = cmd.Start()
	_ = outW.Close()
	_ = inR.Close()
	if err != nil {
		t.Fatalf("start %s: %v", role, err)
	}
	c := &child{t: t, cmd: cmd, out: outR, lines: bufio.NewScanner(outR), stdin: inW}
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		_ = c.wait()
		_ = c.out.Close()
		if b, _ := os.ReadFile(stderr.Name()); t.Failed() && len(b) > 0 {
			t.Logf("%s stderr:\n%s", role, b)
		}
		_ = stderr.Close()
	})
	return c
}

// line returns the child's next line of output, waiting at most 10s.
func (c *child) line() string {
	c.t.Helper()
	if err := c.out.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	if !c.lines.Scan() {
		c.t.Fatalf("child output ended: %v (exit: %v)", c.lines.Err(), c.wait())
	}
	return c.lines.Text()
}

// pids reads n "pid N" lines.
func (c *child) pids(n int) []int {
	c.t.Helper()
	var out []int
	for range n {
		var pid int
		if _, err := fmt.Sscanf(c.line(), "pid %d", &pid); err != nil {
			c.t.Fatal(err)
		}
		out = append(out, pid)
	}
	return out
}

// wait closes the child's stdin, which ends the roles that wait for it,
// and waits for it to exit.
func (c *child) wait() error {
	c.once.Do(func() {
		_ = c.stdin.Close()
		c.waitErr = c.cmd.Wait()
	})
	return c.waitErr
}

// alive reports whether pid is a live process; a zombie, dead but not yet
// reaped by whoever inherited it, is not.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state != 'Z' && state != 'X'
}

// cgroupOf returns the group of pid in each hierarchy, from /proc: the
// controller list ("memory", "" for cgroup2) → path.
func cgroupOf(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			out[parts[1]] = parts[2]
		}
	}
	return out
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
