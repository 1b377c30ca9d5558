package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// ErrNotEmpty means Delete found processes still in the group: Kill first.
var ErrNotEmpty = errors.New("cgroup: group still has processes")

// Group is one control group, spread over every hierarchy the host uses.
// Its methods may be called from several goroutines.
type Group struct {
	name   string
	layout layout
}

// createTries bounds the retries of New when a parent directory vanishes
// under it: Delete of another group removes a job directory once it is
// empty, which can fall between New's mkdir of the parent and of the leaf.
const createTries = 3

// New creates the group's directory in every usable hierarchy and writes
// its limits. The directory must not exist yet (the error then wraps
// fs.ErrExist). A limit no controller here can enforce fails with
// ErrNoController; no usable hierarchy fails with ErrUnavailable. On error
// the group's directories are removed again.
func New(spec Spec) (*Group, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	l, err := detect()
	if err != nil {
		return nil, err
	}
	return create(spec, l)
}

func create(spec Spec, l layout) (*Group, error) {
	for _, c := range []struct {
		what   string
		wanted bool
		where  location
	}{
		{"memory", spec.MemoryBytes > 0, l.memory},
		{"cpu", spec.CPUs > 0, l.cpu},
		{"pids", spec.Pids > 0, l.pids},
		{"devices", len(spec.DenyDevices) > 0, l.devices},
	} {
		if c.wanted && c.where == nowhere {
			return nil, fmt.Errorf("cgroup: %s limit on a %s host: %w", c.what, l.mode(), ErrNoController)
		}
	}
	g := &Group{name: spec.Name, layout: l}
	var err error
	for range createTries {
		if err = g.create(spec); err == nil {
			return g, nil
		}
		if errors.Is(err, fs.ErrExist) {
			break // someone else's group: not ours to remove
		}
		// Leave no half-made group behind.
		if rmErr := g.removeDirs(); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	return nil, fmt.Errorf("cgroup: create %s: %w", spec.Name, err)
}

// create makes the directories and writes the limits through containerd's
// managers, which know each controller's files (and build the eBPF device
// program on cgroup2). The managers are not kept: every later operation
// reads and writes the cgroup files directly.
func (g *Group) create(spec Spec) error {
	l := g.layout
	// Claim the name first, with mkdir, which fails when the directory
	// exists: two groups must never share one. containerd's MkdirAll then
	// finds the directories made.
	for i, dir := range l.dirs(g.name) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return errors.Join(err, g.removeFirst(i))
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			return errors.Join(err, g.removeFirst(i))
		}
	}
	if len(l.v1) > 0 {
		_, memsw := os.Stat(l.v1Dir(cgroup1.Memory, "memory.memsw.limit_in_bytes"))
		_, err := cgroup1.New(cgroup1.StaticPath("/"+g.name), spec.v1Resources(l, memsw == nil),
			cgroup1.WithHierarchy(l.v1Subsystems))
		if err != nil {
			return err
		}
	}
	if l.v2Root != "" {
		if _, err := cgroup2.NewManager(l.v2Root, "/"+g.name, spec.v2Resources(l)); err != nil {
			return err
		}
		// Where the kernel accounts swap, it must not stretch the memory
		// limit: a training job should meet the OOM killer, not thrash.
		swap := filepath.Join(l.v2Root, g.name, "memory.swap.max")
		if _, err := os.Stat(swap); err == nil && spec.MemoryBytes > 0 && l.memory == onV2 {
			if err := writeFile(swap, "0"); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeFirst removes the group's directories in the first n hierarchies:
// those create made before it found the name taken in the next.
func (g *Group) removeFirst(n int) error {
	var errs []error
	for _, dir := range g.layout.dirs(g.name)[:n] {
		errs = append(errs, rmdir(dir))
	}
	return errors.Join(errs...)
}

// v1Subsystems is the hierarchy handed to containerd: only the controllers
// rtrain uses, rooted where detect found them.
func (l layout) v1Subsystems() ([]cgroup1.Subsystem, error) {
	var out []cgroup1.Subsystem
	for _, n := range l.v1 {
		switch n {
		case cgroup1.Freezer:
			out = append(out, cgroup1.NewFreezer(l.v1Root))
		case cgroup1.Pids:
			out = append(out, cgroup1.NewPids(l.v1Root))
		case cgroup1.Cpu:
			out = append(out, cgroup1.NewCpu(l.v1Root))
		case cgroup1.Memory:
			out = append(out, cgroup1.NewMemory(l.v1Root, cgroup1.OptionalSwap()))
		case cgroup1.Devices:
			out = append(out, cgroup1.NewDevices(l.v1Root))
		}
	}
	return out, nil
}

// Load returns the existing group name, created by New in this or another
// process (one that crashed before deleting it, say), so that it can be
// killed and deleted. The error wraps fs.ErrNotExist when no hierarchy has
// it.
func Load(name string) (*Group, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	l, err := detect()
	if err != nil {
		return nil, err
	}
	for _, dir := range l.dirs(name) {
		if _, err := os.Lstat(dir); err == nil {
			return &Group{name: name, layout: l}, nil
		}
	}
	return nil, fmt.Errorf("cgroup: load %s: %w", name, fs.ErrNotExist)
}

// Path is what a process passes to Join to enter the group: its name,
// relative to each hierarchy's root.
func (g *Group) Path() string { return g.name }

// Join moves the calling process, all its threads, into the group at path
// (from Group.Path) in every hierarchy. Its children are then born inside,
// and so are theirs: the re-executed helper that starts a worker calls Join
// and then execs the worker. The group must exist.
func Join(path string) error {
	if err := validName(path); err != nil {
		return err
	}
	l, err := detect()
	if err != nil {
		return err
	}
	return join(l, path)
}

func join(l layout, path string) error {
	pid := strconv.Itoa(os.Getpid())
	for _, dir := range l.dirs(path) {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), pid); err != nil {
			return fmt.Errorf("cgroup: join %s: %w", dir, err)
		}
	}
	return nil
}

// Procs lists the processes in the group, in any hierarchy and in any
// sub-group a worker made, sorted. A group already deleted has none.
func (g *Group) Procs() ([]int, error) {
	pids, err := g.procs()
	if err != nil {
		return nil, fmt.Errorf("cgroup: list processes of %s: %w", g.name, err)
	}
	return pids, nil
}

func (g *Group) procs() ([]int, error) {
	seen := map[int]bool{}
	for _, dir := range g.layout.dirs(g.name) {
		pids, err := readProcs(dir)
		if err != nil {
			return nil, err
		}
		for _, p := range pids {
			seen[p] = true
		}
	}
	out := make([]int, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

// readProcs reads cgroup.procs of dir and of every group below it. Exited
// processes are not listed, zombies included. A missing dir has none.
func readProcs(dir string) ([]int, error) {
	var out []int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // the group, or a sub-group, went away meanwhile
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("%s/cgroup.procs: %w", p, err)
			}
			out = append(out, pid)
		}
		return nil
	})
	return out, err
}

// Delete removes the group's directories, sub-groups a worker made
// included, and then each parent that is left empty, up to but not
// including the name's first component. It fails with ErrNotEmpty while
// processes remain (call Kill first) and does nothing for a group already
// deleted.
func (g *Group) Delete() error {
	pids, err := g.Procs()
	if err != nil {
		return err
	}
	if len(pids) > 0 {
		return fmt.Errorf("cgroup: delete %s: %d processes: %w", g.name, len(pids), ErrNotEmpty)
	}
	if err := g.removeDirs(); err != nil {
		return fmt.Errorf("cgroup: delete %s: %w", g.name, err)
	}
	return nil
}

func (g *Group) removeDirs() error {
	var errs []error
	for _, root := range g.layout.roots() {
		if err := removeTree(filepath.Join(root, g.name)); err != nil {
			errs = append(errs, err)
			continue
		}
		// Parents shared with another live group are not empty and stay.
		for p := path.Dir(g.name); strings.Contains(p, "/"); p = path.Dir(p) {
			if unix.Rmdir(filepath.Join(root, p)) != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// removeTree removes dir and the groups below it, deepest first: a cgroup
// directory goes with rmdir alone, never by unlinking its files.
func removeTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(dirs) {
		if err := rmdir(d); err != nil {
			return err
		}
	}
	return nil
}

// rmdir removes one cgroup directory. The kernel answers EBUSY for a short
// while after the last process left (its css is still being released), so
// that is retried, within a bound.
func rmdir(dir string) error {
	delay := time.Millisecond
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(delay)
			delay = min(2*delay, 100*time.Millisecond)
		default:
			return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
		}
	}
}

// writeFile writes a cgroup control file, which must exist: O_CREATE on a
// missing one would only hide a wrong path.
func writeFile(name, value string) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
