package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/launcher/cgroup"
	"github.com/rtrain/rtrain/pyshim"
)

// nvidiaGPUMinors are the minor numbers NVIDIA GPU nodes can have:
// /dev/nvidia0 to /dev/nvidia253; 254 is nvidia-modeset, 255 nvidiactl.
const nvidiaGPUMinors = 254

// isolation is what the agent enforces for one group.
type isolation struct {
	// template holds the limits the node can enforce, without Name; nil
	// runs the workers without cgroups.
	template *cgroup.Spec
	// devices is whether device rules apply.
	devices bool
	// missing is what was asked and cannot be had, and why; nil when
	// nothing is missing.
	missing *cluster.IsolationError
}

// hostSupport is what the node offers, as probed: cgroup support (or why
// there is none), whether the reaper runs, and whether the node has NVIDIA
// device nodes to guard.
type hostSupport struct {
	cgroups    cgroup.Support
	cgroupsErr error
	reaper     bool
	gpuNode    bool
}

func probeHost(node sched.Node) hostSupport {
	s, err := cgroup.Supported()
	return hostSupport{cgroups: s, cgroupsErr: err, reaper: launcher.ReaperAvailable(), gpuNode: hasNVIDIADevices(node)}
}

// hasNVIDIADevices reports whether the node has GPUs to guard: known ones,
// or NVIDIA device nodes in /dev that an override hid.
func hasNVIDIADevices(node sched.Node) bool {
	if len(node.GPUs) > 0 || len(discover.DeviceGPUs("/dev")) > 0 {
		return true
	}
	_, err := os.Stat("/dev/nvidiactl")
	return err == nil
}

// planIsolation decides, from what host offers, what each worker of a
// group with limits l gets. Pure: the tests feed it hosts of every kind.
func planIsolation(nodeID string, l cluster.Limits, host hostSupport) isolation {
	want := cgroup.Spec{MemoryBytes: l.MemoryBytes, CPUs: l.CPUs, Pids: l.Pids}
	iso := isolation{template: &want, devices: host.gpuNode}
	s := host.cgroups
	var reason error // why there are no cgroups at all
	switch {
	case !host.reaper:
		reason = launcher.ErrNoReaper
	case host.cgroupsErr != nil:
		reason = fmt.Errorf("%w (run rtrain as root, or in a container with a delegated cgroup)", host.cgroupsErr)
	}
	if reason != nil {
		s, iso.template = cgroup.Support{}, nil
	}
	var missing []string
	for _, c := range []struct {
		what   string
		wanted bool
		where  string // the hierarchy that can enforce it, "" for none
		drop   func()
	}{
		{"memory limit", want.MemoryBytes > 0, s.Memory, func() { want.MemoryBytes = 0 }},
		{"CPU limit", want.CPUs > 0, s.CPU, func() { want.CPUs = 0 }},
		{"pids limit", want.Pids > 0, s.Pids, func() { want.Pids = 0 }},
		{"GPU device isolation", iso.devices, s.Devices, func() { iso.devices = false }},
	} {
		if c.wanted && c.where == "" {
			missing = append(missing, c.what)
			c.drop()
		}
	}
	if len(missing) > 0 {
		if reason == nil {
			reason = fmt.Errorf("the %s cgroup layout here has no controller for it", s.Mode)
		}
		iso.missing = &cluster.IsolationError{Node: nodeID, Missing: missing, Reason: reason}
	}
	return iso
}

// workerCgroup is worker ws's cgroup spec under iso, nil for none. Its
// device rules deny every NVIDIA GPU node but those the worker may open:
// the job's GPUs on this node, or under IsolateWorker its own. The
// driver's control nodes (nvidiactl, nvidia-uvm, nvidia-modeset) stay
// open: CUDA needs them and they give no access to another GPU.
func (g *Group) workerCgroup(iso isolation, ws cluster.WorkerSpec, rank int) *cgroup.Spec {
	if iso.template == nil {
		return nil
	}
	s := *iso.template
	parent := cgroupParent()
	// Unique per node and attempt: another agent on the same host, or the
	// next attempt while this one's groups are still going, makes its own.
	s.Name = fmt.Sprintf("%s/%s/%s-attempt-%d/rank-%d", parent, g.spec.JobID, pathSafe(g.name.id), g.spec.Layout.RestartCount, rank)
	if iso.devices {
		allowed := map[int64]bool{}
		for _, idx := range g.visibleGPUs(ws) {
			for _, gpu := range g.agent.node.GPUs {
				if gpu.Index == idx {
					allowed[int64(gpu.Minor)] = true
				}
			}
		}
		for minor := range int64(nvidiaGPUMinors) {
			if !allowed[minor] {
				s.DenyDevices = append(s.DenyDevices, cgroup.Device{Type: 'c', Major: discover.NVIDIAMajor, Minor: minor})
			}
		}
	}
	return &s
}

// cgroupParent is where every worker's group goes.
func cgroupParent() string {
	if p := os.Getenv(cluster.CgroupParentEnv); p != "" {
		return p
	}
	return "rtrain"
}

// sweepIdle is how long a group must have stood empty before a sweep
// takes it: far longer than a launcher takes to fill or remove one.
const sweepIdle = time.Minute

// SweepCgroups kills and removes what an rtrain killed together with its
// reapers left under the parent (a SIGKILL to all of them, an OOM kill, a
// power cut): workers' children still running in their groups, and empty
// groups. Called as a node starts, before it makes its own.
func SweepCgroups(ctx context.Context, log *slog.Logger) {
	if n, err := launcher.SweepOrphans(ctx, cgroupParent()); err != nil || n > 0 {
		log.Warn("killed workers' children left running by an earlier run whose reapers died", "parent", cgroupParent(), "groups", n, "err", err)
	}
	n, err := cgroup.Sweep(cgroupParent(), sweepIdle)
	if err != nil {
		log.Warn("sweep cgroups left by an earlier run", "parent", cgroupParent(), "err", err)
	}
	if n > 0 {
		log.Info("removed cgroups left by an earlier run", "parent", cgroupParent(), "dirs", n)
	}
}

// pathSafe is s with every character that cannot stand in one cgroup
// directory name replaced by '_'.
func pathSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '\n' {
			return '_'
		}
		return r
	}, s)
}

// visibleGPUs are the GPU indices worker ws sees, sorted: the job's on
// this node, or under IsolateWorker its own. None for a CPU worker.
func (g *Group) visibleGPUs(ws cluster.WorkerSpec) []int {
	if len(ws.GPUs) == 0 {
		return nil
	}
	if g.spec.Limits.GPUIsolation == cluster.IsolateWorker {
		return slices.Sorted(slices.Values(ws.GPUs))
	}
	var ids []int
	for _, w := range g.spec.Workers {
		ids = append(ids, w.GPUs...)
	}
	slices.Sort(ids)
	return ids
}

// gpuEnv sets what CUDA and the NVIDIA container runtime read to find the
// worker's GPUs: CUDA_VISIBLE_DEVICES (indices), NVIDIA_VISIBLE_DEVICES
// (UUIDs where known) and RTRAIN_CUDA_DEVICE, the worker's own GPU as an
// index into CUDA_VISIBLE_DEVICES, with CUDA_DEVICE_ORDER=PCI_BUS_ID so
// that CUDA numbers the GPUs as the driver does. Local rank i of a job
// with one GPU per worker trains on the i-th of the job's GPUs; under
// IsolateWorker it sees only its own, index 0.
func (g *Group) gpuEnv(m map[string]string, ws cluster.WorkerSpec) {
	delete(m, pyshim.CUDADeviceEnv)
	visible := g.visibleGPUs(ws)
	if len(visible) == 0 {
		if len(g.agent.node.GPUs) > 0 {
			// A CPU job on a GPU node must not grab a GPU by accident.
			m["CUDA_VISIBLE_DEVICES"] = ""
			m["NVIDIA_VISIBLE_DEVICES"] = "none"
		}
		return
	}
	ids := make([]string, len(visible))
	uuids := make([]string, len(visible))
	for i, idx := range visible {
		ids[i] = strconv.Itoa(idx)
		uuids[i] = ids[i]
		for _, gpu := range g.agent.node.GPUs {
			if gpu.Index == idx && gpu.UUID != "" {
				uuids[i] = gpu.UUID
			}
		}
		if idx == ws.GPUs[0] {
			m[pyshim.CUDADeviceEnv] = strconv.Itoa(i)
		}
	}
	m["CUDA_VISIBLE_DEVICES"] = strings.Join(ids, ",")
	m["NVIDIA_VISIBLE_DEVICES"] = strings.Join(uuids, ",")
	if _, ok := m["CUDA_DEVICE_ORDER"]; !ok {
		// CUDA numbers the fastest GPU first unless told otherwise; the
		// indices above, and the device rules, follow the driver's order.
		m["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
	}
}
