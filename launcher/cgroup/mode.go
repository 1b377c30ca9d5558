package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"
)

// ErrUnavailable means there is no cgroup hierarchy this process can use:
// none is mounted, it is read-only, or the process is not root. Callers
// run workers without isolation.
var ErrUnavailable = errors.New("cgroup: no usable cgroup hierarchy")

// ErrNoController means a limit was asked for that no mounted controller can
// enforce, such as a memory limit on a host whose only writable hierarchy
// lacks the memory controller.
var ErrNoController = errors.New("cgroup: no controller for this limit")

// Mode is the layout of the cgroup hierarchies that this process can use.
type Mode int

const (
	// Unavailable means no hierarchy is usable; Detect returns it with an
	// error.
	Unavailable Mode = iota
	// Legacy is cgroup v1 alone: one hierarchy per controller.
	Legacy
	// Hybrid is cgroup v1 controllers with a cgroup2 hierarchy beside them
	// (systemd's hybrid mode), usually without controllers of its own.
	Hybrid
	// Unified is cgroup v2 alone.
	Unified
)

// String names the mode as cgroup documentation does.
func (m Mode) String() string {
	switch m {
	case Legacy:
		return "legacy"
	case Hybrid:
		return "hybrid"
	case Unified:
		return "unified"
	default:
		return "unavailable"
	}
}

// mountRoot is where systemd, Docker and every distribution mount cgroups;
// containerd's own detection assumes it too.
const mountRoot = "/sys/fs/cgroup"

// v1Controllers are the v1 hierarchies a group lives in. Freezer is there
// for Kill; the others enforce a limit or report a statistic. cpuset, blkio
// and the rest are left alone: rtrain sets nothing in them, and a cpuset
// group would first need its cpus and mems copied from the parent.
var v1Controllers = []cgroup1.Name{cgroup1.Freezer, cgroup1.Pids, cgroup1.Cpu, cgroup1.Memory, cgroup1.Devices}

// location is the hierarchy that enforces one kind of limit.
type location int

const (
	nowhere location = iota
	onV1
	onV2
)

// layout is what detect found: which hierarchies are usable and which of
// them enforces each limit.
type layout struct {
	// v1Root holds the v1 controller mounts, v1Root/<controller>; empty
	// when no v1 controller is usable.
	v1Root string
	// v1 lists the usable v1 controllers among v1Controllers.
	v1 []cgroup1.Name
	// v2Root is the cgroup2 mount; empty when there is none usable.
	v2Root string
	// v2Controllers are the controllers the cgroup2 root offers.
	v2Controllers map[string]bool

	memory, cpu, pids, devices location
}

func (l layout) mode() Mode {
	switch {
	case len(l.v1) > 0 && l.v2Root != "":
		return Hybrid
	case len(l.v1) > 0:
		return Legacy
	case l.v2Root != "":
		return Unified
	}
	return Unavailable
}

func (l layout) hasV1(n cgroup1.Name) bool { return slices.Contains(l.v1, n) }

// roots lists the root directory of every hierarchy used.
func (l layout) roots() []string {
	var out []string
	for _, n := range l.v1 {
		out = append(out, l.v1Dir(n, ""))
	}
	if l.v2Root != "" {
		out = append(out, l.v2Root)
	}
	return out
}

// dirs lists the directories of the group name, one per hierarchy used.
func (l layout) dirs(name string) []string {
	out := l.roots()
	for i, r := range out {
		out[i] = filepath.Join(r, name)
	}
	return out
}

// v1Dir is the directory of the group name in v1 controller n's hierarchy.
func (l layout) v1Dir(n cgroup1.Name, name string) string {
	return filepath.Join(l.v1Root, string(n), name)
}

// Detect reports which cgroup layout this host has, counting only the
// hierarchies this process may write to. It fails with ErrUnavailable when
// none is usable (no cgroup filesystem, read-only, or not root).
func Detect() (Mode, error) {
	l, err := detect()
	if err != nil {
		return Unavailable, err
	}
	return l.mode(), nil
}

func detect() (layout, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(mountRoot, &st); err != nil {
		return layout{}, fmt.Errorf("%w: %s: %w", ErrUnavailable, mountRoot, err)
	}
	var (
		l      layout
		reason error // why a mounted hierarchy was left out, for the error
	)
	usable := func(dir string) bool {
		if err := unix.Access(dir, unix.W_OK); err != nil {
			if reason == nil {
				reason = fmt.Errorf("%s: %w", dir, err)
			}
			return false
		}
		return true
	}
	if int64(st.Type) == unix.CGROUP2_SUPER_MAGIC {
		if usable(mountRoot) {
			l.v2Root = mountRoot
		}
	} else {
		for _, n := range v1Controllers {
			dir := filepath.Join(mountRoot, string(n))
			if isFS(dir, unix.CGROUP_SUPER_MAGIC) && usable(dir) {
				l.v1 = append(l.v1, n)
			}
		}
		if len(l.v1) > 0 {
			l.v1Root = mountRoot
		}
		if dir := filepath.Join(mountRoot, "unified"); isFS(dir, unix.CGROUP2_SUPER_MAGIC) && usable(dir) {
			l.v2Root = dir
		}
	}
	if l.mode() == Unavailable {
		if reason == nil {
			reason = fmt.Errorf("%s: no cgroup filesystem mounted", mountRoot)
		}
		return layout{}, fmt.Errorf("%w: %w", ErrUnavailable, reason)
	}
	if l.v2Root != "" {
		b, err := os.ReadFile(filepath.Join(l.v2Root, "cgroup.controllers"))
		if err != nil {
			return layout{}, fmt.Errorf("cgroup: read cgroup2 controllers: %w", err)
		}
		l.v2Controllers = map[string]bool{}
		for _, c := range strings.Fields(string(b)) {
			l.v2Controllers[c] = true
		}
	}
	l.assign()
	return l, nil
}

// assign decides which hierarchy enforces each kind of limit. A v1
// controller, when mounted, owns its resource: the kernel binds a
// controller to one hierarchy only, so on hybrid hosts the cgroup2 side
// cannot offer it anyway. Device rules need no cgroup2 controller: the
// eBPF program attaches to any cgroup2 directory.
func (l *layout) assign() {
	pick := func(n cgroup1.Name) location {
		switch {
		case l.hasV1(n):
			return onV1
		case l.v2Controllers[string(n)]:
			return onV2
		}
		return nowhere
	}
	l.memory, l.cpu, l.pids = pick(cgroup1.Memory), pick(cgroup1.Cpu), pick(cgroup1.Pids)
	l.devices = nowhere
	switch {
	case l.hasV1(cgroup1.Devices):
		l.devices = onV1
	case l.v2Root != "":
		l.devices = onV2
	}
}

// isFS reports whether dir lies on a filesystem of the given type: an empty
// directory left on the tmpfs under /sys/fs/cgroup is not a hierarchy.
func isFS(dir string, magic int64) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && int64(st.Type) == magic
}
