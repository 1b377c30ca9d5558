package cgroup

import (
	"fmt"
	"math"
	"path"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cpuPeriod is the CFS period in microseconds (100ms, the kernel default).
// CPUs is turned into a quota of CPUs*cpuPeriod per period.
const cpuPeriod = 100_000

// minCPUQuota is the smallest quota the kernel accepts, in microseconds.
const minCPUQuota = 1_000

// Device is a device node by type and number, as in `ls -l /dev`.
type Device struct {
	// Type is 'c' for a character device or 'b' for a block device.
	Type rune
	// Major and Minor are the device numbers; -1 matches any, so
	// {'c', 195, -1} is every NVIDIA device node.
	Major, Minor int64
}

// String is the device as cgroup v1's devices.deny spells it.
func (d Device) String() string {
	num := func(n int64) string {
		if n < 0 {
			return "*"
		}
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%c %s:%s", d.Type, num(d.Major), num(d.Minor))
}

// Spec describes one group. The zero value of every limit means none.
type Spec struct {
	// Name is the group's path relative to the root of each hierarchy, such
	// as "rtrain/<job-id>/rank-0". The directory is created under every
	// hierarchy used and must not exist yet. Delete removes it and its
	// parents once empty, except the first component ("rtrain"), which
	// every job shares and where an operator may set node-wide limits.
	Name string
	// MemoryBytes caps the memory of the whole group; a process that
	// pushes it over is killed by the kernel's OOM killer. Swap does not
	// extend it. On cgroup v2 the OOM killer takes the whole group
	// (memory.oom.group), so a worker never runs on without a DataLoader
	// child it depended on. 0 is no limit.
	MemoryBytes int64
	// CPUs is the CPU time the group may use, in cores (1.5 = 150ms every
	// 100ms period), enforced by CFS bandwidth control. 0 is no limit; the
	// smallest limit is 0.01.
	CPUs float64
	// Pids caps the processes and threads in the group; fork and clone fail
	// with EAGAIN beyond it. 0 is no limit.
	Pids int64
	// DenyDevices are the device nodes the group may not open or mknod;
	// every other device stays allowed, so /dev/null, /dev/shm and
	// /dev/infiniband/* keep working. Deny c 195:N for the GPUs a job does
	// not hold. Empty sets no device rule at all.
	DenyDevices []Device
}

func (s Spec) validate() error {
	if err := validName(s.Name); err != nil {
		return err
	}
	if s.MemoryBytes < 0 {
		return fmt.Errorf("cgroup: memory limit %d is negative", s.MemoryBytes)
	}
	if s.Pids < 0 {
		return fmt.Errorf("cgroup: pids limit %d is negative", s.Pids)
	}
	if s.CPUs < 0 || math.IsNaN(s.CPUs) || math.IsInf(s.CPUs, 0) {
		return fmt.Errorf("cgroup: cpu limit %v is not a number of cores", s.CPUs)
	}
	if s.CPUs > 0 && s.cpuQuota() < minCPUQuota {
		return fmt.Errorf("cgroup: cpu limit %v is below the kernel's minimum of %v", s.CPUs, float64(minCPUQuota)/cpuPeriod)
	}
	for _, d := range s.DenyDevices {
		if d.Type != 'c' && d.Type != 'b' {
			return fmt.Errorf("cgroup: device %q: type must be 'c' or 'b'", d.Type)
		}
		if d.Major < -1 || d.Minor < -1 || d.Major > math.MaxUint32 || d.Minor > math.MaxUint32 {
			return fmt.Errorf("cgroup: device %s: bad number", d)
		}
	}
	return nil
}

// validName accepts a clean relative path that stays below the root: the
// name is joined to every hierarchy's root, so ".." would escape it.
func validName(name string) error {
	if name == "" || path.IsAbs(name) || path.Clean(name) != name || name == "." ||
		name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("cgroup: name %q must be a clean relative path like rtrain/job/rank-0", name)
	}
	return nil
}

func (s Spec) cpuQuota() int64 { return int64(math.Round(s.CPUs * cpuPeriod)) }

// deviceRules turns DenyDevices into OCI rules: allow everything, then deny
// each device. Both of containerd's backends give the last matching rule
// the say, as the OCI spec does. Major and Minor are always set, to -1 for
// "any": containerd v3.1.3 dereferences them without a nil check.
func (s Spec) deviceRules() []specs.LinuxDeviceCgroup {
	if len(s.DenyDevices) == 0 {
		return nil
	}
	wildcard := int64(-1)
	rules := []specs.LinuxDeviceCgroup{{Allow: true, Type: "a", Major: &wildcard, Minor: &wildcard, Access: "rwm"}}
	for _, d := range s.DenyDevices {
		major, minor := d.Major, d.Minor
		rules = append(rules, specs.LinuxDeviceCgroup{
			Allow: false, Type: string(d.Type), Major: &major, Minor: &minor, Access: "rwm",
		})
	}
	return rules
}

// v1Resources is what cgroup v1 controllers enforce under layout l. Swap
// is capped at the memory limit where the kernel accounts it (memsw), so
// the group meets the OOM killer rather than swapping past its limit.
func (s Spec) v1Resources(l layout, memswAccounted bool) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if s.MemoryBytes > 0 && l.memory == onV1 {
		limit := s.MemoryBytes
		r.Memory = &specs.LinuxMemory{Limit: &limit}
		if memswAccounted {
			swap := s.MemoryBytes
			r.Memory.Swap = &swap
		}
	}
	if s.CPUs > 0 && l.cpu == onV1 {
		quota, period := s.cpuQuota(), uint64(cpuPeriod)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if s.Pids > 0 && l.pids == onV1 {
		limit := s.Pids
		r.Pids = &specs.LinuxPids{Limit: &limit}
	}
	if l.devices == onV1 {
		r.Devices = s.deviceRules()
	}
	return r
}

// v2Resources is what the cgroup2 hierarchy enforces under layout l. Every
// controller it owns is enabled even without a limit, so that Stats can
// read its usage. Swap is handled after creation: memory.swap.max exists
// only where the kernel accounts swap, which cannot be told beforehand.
func (s Spec) v2Resources(l layout) *cgroup2.Resources {
	r := &cgroup2.Resources{}
	if l.memory == onV2 {
		r.Memory = &cgroup2.Memory{}
		if s.MemoryBytes > 0 {
			limit, group := s.MemoryBytes, true
			r.Memory.Max, r.Memory.OOMGroup = &limit, &group
		}
	}
	if l.cpu == onV2 {
		r.CPU = &cgroup2.CPU{}
		if s.CPUs > 0 {
			quota, period := s.cpuQuota(), uint64(cpuPeriod)
			r.CPU.Max = cgroup2.NewCPUMax(&quota, &period)
		}
	}
	if l.pids == onV2 {
		r.Pids = &cgroup2.Pids{Max: s.Pids}
	}
	if l.devices == onV2 {
		r.Devices = s.deviceRules()
	}
	return r
}
