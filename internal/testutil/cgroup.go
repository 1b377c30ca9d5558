package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rtrain/rtrain/launcher/cgroup"
)

// cgroupMount is where every hierarchy is mounted.
const cgroupMount = "/sys/fs/cgroup"

// IsolateCgroups points the rtrain processes of this test binary at a
// cgroup parent and a runtime directory of their own, through the
// environment (RTRAIN_CGROUP_PARENT, RTRAIN_RUNTIME_DIR), so that packages
// testing at once neither see each other's groups nor contend for the same
// fake GPUs. Call it from TestMain before m.Run; call the returned function
// after, which removes the parent and reports a group left in it.
func IsolateCgroups() (parent string, done func() error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	parent = "rtrain-test-" + hex.EncodeToString(b)
	runtime, err := os.MkdirTemp("", "rtrain-runtime-")
	if err != nil {
		return parent, func() error { return err }
	}
	_ = os.Setenv("RTRAIN_CGROUP_PARENT", parent)
	_ = os.Setenv("RTRAIN_RUNTIME_DIR", runtime)
	return parent, func() error {
		_ = os.RemoveAll(runtime)
		left := CgroupsUnder(parent)
		g, err := cgroup.Load(parent)
		if err != nil {
			return nil // no job made a group: nothing to remove
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Kill(ctx); err != nil {
			return err
		}
		if err := g.Delete(); err != nil {
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("cgroups left behind: %v", left)
		}
		return nil
	}
}

// RunIsolated runs m's tests under IsolateCgroups, with the parent stored
// in *parent first, and returns the exit code for TestMain: a failure too
// when a group was left behind.
func RunIsolated(m *testing.M, parent *string) int {
	p, done := IsolateCgroups()
	*parent = p
	code := m.Run()
	if err := done(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = 1
	}
	return code
}

// CgroupsUnder lists the groups below parent, in every hierarchy.
func CgroupsUnder(parent string) []string {
	var out []string
	s, err := cgroup.Supported()
	if err != nil {
		return nil
	}
	roots := []string{}
	for _, c := range s.V1 {
		roots = append(roots, filepath.Join(cgroupMount, c))
	}
	if s.V2Root != "" {
		roots = append(roots, s.V2Root)
	}
	for _, root := range roots {
		_ = filepath.WalkDir(filepath.Join(root, parent), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != filepath.Join(root, parent) {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// NoCgroups fails t if a group is left below parent after wait.
func NoCgroups(t testing.TB, parent string, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		left := CgroupsUnder(parent)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("cgroups left behind: %v", left)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RequireCgroups skips t, or fails it in CI, where this process cannot
// make cgroups (not root, no writable hierarchy).
func RequireCgroups(t testing.TB) cgroup.Support {
	t.Helper()
	RequireRoot(t)
	s, err := cgroup.Supported()
	if err != nil {
		missing(t, "cgroups ("+err.Error()+")")
	}
	return s
}
