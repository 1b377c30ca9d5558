package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"
)

// freezeWait bounds how long one round of Kill waits for the v1 freezer to
// report FROZEN. Tasks that are already exiting can keep it at FREEZING;
// they are killed all the same, and the next round catches what forked.
const freezeWait = 100 * time.Millisecond

// Kill sends SIGKILL to every process in the group and returns once the
// group is empty, or with ctx's error (wrapped) when ctx ends first.
//
// On cgroup2 it writes cgroup.kill (Linux 5.14+), which kills the whole
// tree at once and lets no fork escape. Processes only a v1 hierarchy
// holds (all of them on a legacy host) are frozen with the v1 freezer,
// killed one by one and thawed, so none can fork while the list is read.
// Either way it repeats until the group is empty: an exiting process with
// a lot of memory takes a while to leave, and one in uninterruptible sleep
// (stuck in a driver, say) leaves only when the kernel lets it, which may
// be after ctx ends.
func (g *Group) Kill(ctx context.Context) error {
	delay := time.Millisecond
	for {
		left, err := g.killOnce(ctx)
		if err != nil {
			return fmt.Errorf("cgroup: kill %s: %w", g.name, err)
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cgroup: kill %s: %d processes left: %w", g.name, left, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// killOnce kills what is in the group now and returns how many processes
// it found.
func (g *Group) killOnce(ctx context.Context) (int, error) {
	all, err := g.procs()
	if err != nil || len(all) == 0 {
		return 0, err
	}
	rest := all
	if g.layout.v2Root != "" {
		dir := filepath.Join(g.layout.v2Root, g.name)
		inV2, err := readProcs(dir)
		if err != nil {
			return 0, err
		}
		killed, err := cgroupKill(dir)
		if err != nil {
			return 0, err
		}
		if killed {
			// What was in the v2 group is dying already; what forked since
			// was born there and died with it.
			rest = without(all, inV2)
		}
	}
	if len(rest) > 0 {
		if err := g.freezeAndKill(ctx); err != nil {
			return 0, err
		}
	}
	return len(all), nil
}

// cgroupKill writes cgroup.kill in dir. It reports false when the kernel
// is too old to have the file.
func cgroupKill(dir string) (bool, error) {
	err := writeFile(filepath.Join(dir, "cgroup.kill"), "1")
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		_, statErr := os.Stat(dir)
		if errors.Is(statErr, fs.ErrNotExist) {
			return true, nil // the group itself is gone: nothing to kill there
		}
		return false, nil
	}
	return false, err
}

// freezeAndKill freezes the group with the v1 freezer where there is one,
// sends SIGKILL to every process listed while frozen, and thaws: frozen
// processes cannot fork, and the kills take effect on thawing. Without a
// freezer the processes are killed as listed, and Kill's next round gets
// any child forked meanwhile.
func (g *Group) freezeAndKill(ctx context.Context) (err error) {
	if g.layout.hasV1(cgroup1.Freezer) {
		state := filepath.Join(g.layout.v1Dir(cgroup1.Freezer, g.name), "freezer.state")
		if err := writeFile(state, "FROZEN"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// Thaw whatever happens: a group left frozen would hold its
		// processes forever, SIGKILL pending.
		defer func() {
			if thawErr := writeFile(state, "THAWED"); thawErr != nil && !errors.Is(thawErr, fs.ErrNotExist) {
				err = errors.Join(err, thawErr)
			}
		}()
		waitFrozen(ctx, state)
	}
	pids, err := g.procs()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill %d: %w", pid, err)
		}
	}
	return nil
}

// waitFrozen polls freezer.state until it says FROZEN, for at most
// freezeWait; the kernel offers no event for it.
func waitFrozen(ctx context.Context, state string) {
	ctx, cancel := context.WithTimeout(ctx, freezeWait)
	defer cancel()
	delay := 100 * time.Microsecond
	for {
		b, err := os.ReadFile(state)
		if err != nil || strings.TrimSpace(string(b)) == "FROZEN" {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// without returns the elements of all (sorted) that are not in some.
func without(all, some []int) []int {
	drop := make(map[int]bool, len(some))
	for _, p := range some {
		drop[p] = true
	}
	var out []int
	for _, p := range all {
		if !drop[p] {
			out = append(out, p)
		}
	}
	return out
}
