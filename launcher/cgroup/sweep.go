package cgroup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Sweep removes the groups below parent (not parent itself) that hold no
// process and no group and were last changed more than idle ago, in every
// hierarchy, deepest first: what a launcher killed together with its
// reapers (a SIGKILL to the whole tree, an OOM kill, a power cut) left.
// A live launcher's group is never taken: it holds its worker, or was made
// moments ago, and a parent that New made meanwhile is made again (New
// retries). It returns how many directories went.
func Sweep(parent string, idle time.Duration) (int, error) {
	l, err := detect()
	if err != nil {
		return 0, nil // no cgroups here: nothing could be left
	}
	return sweep(l, parent, idle)
}

func sweep(l layout, parent string, idle time.Duration) (int, error) {
	removed := 0
	var errs []error
	for _, root := range l.roots() {
		n, err := sweepTree(filepath.Join(root, parent), idle)
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

func sweepTree(top string, idle time.Duration) (int, error) {
	var dirs []string
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && p != top {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	removed := 0
	cutoff := time.Now().Add(-idle)
	for _, dir := range slices.Backward(dirs) {
		fi, err := os.Stat(dir)
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		if pids, err := readProcs(dir); err != nil || len(pids) > 0 {
			continue
		}
		// rmdir fails on a group with children or processes (EBUSY): the
		// kernel has the last word on what is empty.
		if err := unix.Rmdir(dir); err == nil {
			removed++
		}
	}
	return removed, nil
}

// Leaves lists the groups below parent that have none below them, by
// name (what Load takes), from the first hierarchy that has parent.
func Leaves(parent string) ([]string, error) {
	l, err := detect()
	if err != nil {
		return nil, nil
	}
	for _, root := range l.roots() {
		top := filepath.Join(root, parent)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		var out []string
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !d.IsDir() || p == top {
				return nil
			}
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil
			}
			for _, e := range entries {
				if e.IsDir() {
					return nil
				}
			}
			rel, err := filepath.Rel(root, p)
			if err == nil {
				out = append(out, filepath.ToSlash(rel))
			}
			return nil
		})
		return out, err
	}
	return nil, nil
}
