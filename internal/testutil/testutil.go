// Package testutil holds helpers for tests that use real parts: PyTorch,
// root, the process table. A test that needs a part this machine lacks is
// skipped on a laptop, but fails when CI is set: nothing real is silently
// skipped in CI.
package testutil

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// missing skips t, or fails it under CI.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI (make test installs it)", what)
	}
	t.Skipf("skipping: %s", what)
}

// Python returns an interpreter that can import torch: $RTRAIN_TEST_PYTHON,
// else Debian's /usr/bin/python3.
func Python(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping a real PyTorch job in -short mode")
	}
	py := os.Getenv("RTRAIN_TEST_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		missing(t, py+" with torch")
	}
	return py
}

// RequireRoot skips (or in CI fails) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "root")
	}
}

// RepoRoot is the repository's top directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Marker returns a KEY=VALUE unique to this test. Put it in a job's
// environment: every process of the job, grandchildren included, inherits
// it, so Processes finds them all.
func Marker(t testing.TB) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "RTRAIN_TEST_MARKER=" + hex.EncodeToString(b)
}

// Processes lists the pids of live processes whose environment holds
// marker. Zombies count as gone.
func Processes(marker string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	needle := append([]byte(marker), 0)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append(env, 0), needle) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// NoProcesses fails t if processes holding marker are still alive after
// wait (the kernel needs a moment to deliver a death signal and reap).
func NoProcesses(t testing.TB, marker string, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		pids := Processes(marker)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				cmd, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
				t.Errorf("process %d left behind: %s", pid, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WriteFiles writes files (slash path → content) under a new temporary
// directory and returns it.
func WriteFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
