package launcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/rtrain/rtrain/launcher/cgroup"
)

// SweepOrphans kills the worker groups under parent that no reaper
// watches any more: a launcher killed together with its reapers (SIGKILL
// to all of them, the OOM killer, killall) leaves the workers' children,
// which the parent-death signal does not reach, running in their groups.
// A live worker's group always holds a process whose parent is its
// reaper. It returns how many groups it killed and removed.
func SweepOrphans(ctx context.Context, parent string) (int, error) {
	names, err := cgroup.Leaves(parent)
	if err != nil {
		return 0, fmt.Errorf("launcher: sweep %s: %w", parent, err)
	}
	n := 0
	var errs []error
	for _, name := range names {
		g, err := cgroup.Load(name)
		if err != nil {
			continue // removed meanwhile
		}
		pids, err := g.Procs()
		if err != nil || len(pids) == 0 || !orphaned(pids) {
			continue
		}
		if err := g.Kill(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := g.Delete(); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// orphaned reports whether none of pids (a group's processes) has a
// reaper for a parent. Anything unreadable counts as watched: a sweep
// must never kill a live job.
func orphaned(pids []int) bool {
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	for _, p := range pids {
		ppid, ok := parentOf(p)
		if !ok {
			return false
		}
		if in[ppid] || ppid == 1 {
			// Reparented to init: nobody watches it (init's own
			// environment may not even be readable).
			continue
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/environ")
		if err != nil || bytes.Contains(env, []byte(reaperEnv+"=")) {
			return false
		}
	}
	return true
}

func parentOf(pid int) (int, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	fields := bytes.Fields(stat[i+1:])
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(string(fields[1]))
	return ppid, err == nil
}
