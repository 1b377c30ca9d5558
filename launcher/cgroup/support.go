package cgroup

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Support is what this host's cgroups can enforce, for callers that drop a
// limit the host cannot enforce instead of failing New, and for reporting
// (rtrain doctor). Each limit names the hierarchy that enforces it:
// "cgroup v1", "cgroup v2" (device rules there: an eBPF program), or ""
// where none can.
type Support struct {
	Mode                       Mode
	Memory, CPU, Pids, Devices string
	// V1 lists the usable v1 controllers; V2Root is the usable cgroup2
	// mount ("" for none) and V2Controllers what its root offers.
	V1            []string
	V2Root        string
	V2Controllers []string
}

// Supported reports what New can enforce here. It fails, wrapping
// ErrUnavailable, where no hierarchy is usable; the error says why.
func Supported() (Support, error) {
	l, err := detect()
	if err != nil {
		return Support{Mode: Unavailable}, err
	}
	name := func(loc location) string {
		switch loc {
		case onV1:
			return "cgroup v1"
		case onV2:
			return "cgroup v2"
		}
		return ""
	}
	s := Support{
		Mode:   l.mode(),
		Memory: name(l.memory), CPU: name(l.cpu), Pids: name(l.pids), Devices: name(l.devices),
		V2Root: l.v2Root,
	}
	for _, n := range l.v1 {
		s.V1 = append(s.V1, string(n))
	}
	s.V2Controllers = slices.Sorted(maps.Keys(l.v2Controllers))
	return s, nil
}

// String describes the layout in one line: "hybrid: v1 freezer pids cpu
// memory devices, cgroup2 at /sys/fs/cgroup/unified (no controllers)".
func (s Support) String() string {
	var parts []string
	if len(s.V1) > 0 {
		parts = append(parts, "v1 "+strings.Join(s.V1, " "))
	}
	if s.V2Root != "" {
		c := "no controllers"
		if len(s.V2Controllers) > 0 {
			c = strings.Join(s.V2Controllers, " ")
		}
		parts = append(parts, fmt.Sprintf("cgroup2 at %s (%s)", s.V2Root, c))
	}
	return s.Mode.String() + ": " + strings.Join(parts, ", ")
}
