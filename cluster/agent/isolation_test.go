package agent

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/launcher/cgroup"
	"github.com/rtrain/rtrain/pyshim"
)

func TestPlanIsolation(t *testing.T) {
	hybrid := cgroup.Support{Mode: cgroup.Hybrid, Memory: "cgroup v1", CPU: "cgroup v1", Pids: "cgroup v1", Devices: "cgroup v1"}
	noMemory := cgroup.Support{Mode: cgroup.Unified, CPU: "cgroup v2", Pids: "cgroup v2", Devices: "cgroup v2"}
	unavailable := errors.New("cgroup: no usable cgroup hierarchy: /sys/fs/cgroup: permission denied")
	all := cluster.Limits{MemoryBytes: 1 << 30, CPUs: 2, Pids: 100}
	for name, tt := range map[string]struct {
		limits   cluster.Limits
		host     hostSupport
		template *cgroup.Spec
		devices  bool
		missing  []string
	}{
		"everything": {all, hostSupport{cgroups: hybrid, reaper: true, gpuNode: true},
			&cgroup.Spec{MemoryBytes: 1 << 30, CPUs: 2, Pids: 100}, true, nil},
		"no GPUs, no device rules": {all, hostSupport{cgroups: hybrid, reaper: true},
			&cgroup.Spec{MemoryBytes: 1 << 30, CPUs: 2, Pids: 100}, false, nil},
		"no memory controller": {all, hostSupport{cgroups: noMemory, reaper: true, gpuNode: true},
			&cgroup.Spec{CPUs: 2, Pids: 100}, true, []string{"memory limit"}},
		"memory not asked": {cluster.Limits{Pids: 100}, hostSupport{cgroups: noMemory, reaper: true},
			&cgroup.Spec{Pids: 100}, false, nil},
		"not root": {all, hostSupport{cgroupsErr: unavailable, reaper: true, gpuNode: true},
			nil, false, []string{"memory limit", "CPU limit", "pids limit", "GPU device isolation"}},
		"no reaper": {cluster.Limits{Pids: 100}, hostSupport{cgroups: hybrid},
			nil, false, []string{"pids limit"}},
		"nothing asked, nothing to miss": {cluster.Limits{}, hostSupport{cgroupsErr: unavailable, reaper: true},
			nil, false, nil},
	} {
		t.Run(name, func(t *testing.T) {
			iso := planIsolation("n1", tt.limits, tt.host)
			if d := cmp.Diff(tt.template, iso.template); d != "" {
				t.Errorf("cgroup template (-want +got):\n%s", d)
			}
			assert.Equal(t, tt.devices, iso.devices, "device rules")
			if tt.missing == nil {
				assert.Nil(t, iso.missing)
				return
			}
			require.NotNil(t, iso.missing)
			assert.Equal(t, tt.missing, iso.missing.Missing)
			assert.ErrorIs(t, iso.missing, cluster.ErrNotIsolated)
			assert.Contains(t, iso.missing.Error(), "node n1 cannot enforce ")
		})
	}
	iso := planIsolation("n1", cluster.Limits{Pids: 1}, hostSupport{cgroups: hybrid})
	assert.ErrorIs(t, iso.missing, launcher.ErrNoReaper, "the reason is kept")
}

// testGroup is a group of workers on a node with GPUs 0-3, whose device
// minors are 10 + index.
func testGroup(isolation cluster.GPUIsolation, workers ...cluster.WorkerSpec) *Group {
	node := sched.Node{ID: "n1"}
	for i := range 4 {
		node.GPUs = append(node.GPUs, sched.GPU{Index: i, Minor: 10 + i})
	}
	node.GPUs[2].UUID = "GPU-2222"
	agent := New(node, "/shim", slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &Group{agent: agent, name: agent.name.Load(), spec: cluster.GroupSpec{JobID: "job1", Workers: workers, Limits: cluster.Limits{GPUIsolation: isolation}}}
}

// A rank's cgroup is its node's and attempt's: a second agent on the same
// host, or the next attempt of the job, must not collide with it ("file
// exists" failed a restart).
func TestCgroupNamesAreUniquePerNodeAndAttempt(t *testing.T) {
	t.Setenv(cluster.CgroupParentEnv, "")
	iso := isolation{template: &cgroup.Spec{}}
	name := func(node string, attempt int) string {
		g := testGroup(cluster.IsolateJob, cluster.WorkerSpec{})
		g.agent.rename(node)
		g.name = g.agent.name.Load()
		g.spec.Layout.RestartCount = attempt
		return g.workerCgroup(iso, cluster.WorkerSpec{}, 0).Name
	}
	names := map[string]bool{}
	for _, n := range []string{name("vm", 0), name("vm-2", 0), name("vm", 1), name("a/b", 0)} {
		assert.False(t, names[n], "%s twice", n)
		names[n] = true
		assert.Equal(t, 4, len(strings.Split(n, "/")), "%s: parent/job/node-attempt/rank", n)
	}
}

func TestGPUEnvAndDeviceRules(t *testing.T) {
	t.Setenv(cluster.CgroupParentEnv, "")
	w0, w1 := cluster.WorkerSpec{LocalRank: 0, GPUs: []int{1}}, cluster.WorkerSpec{LocalRank: 1, GPUs: []int{2}}
	for name, tt := range map[string]struct {
		g       *Group
		ws      cluster.WorkerSpec
		env     map[string]string
		allowed []int64 // minors not denied
	}{
		"job, rank 0": {testGroup(cluster.IsolateJob, w0, w1), w0,
			map[string]string{"CUDA_VISIBLE_DEVICES": "1,2", "NVIDIA_VISIBLE_DEVICES": "1,GPU-2222", pyshim.CUDADeviceEnv: "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, []int64{11, 12}},
		"job, rank 1": {testGroup("", w0, w1), w1,
			map[string]string{"CUDA_VISIBLE_DEVICES": "1,2", "NVIDIA_VISIBLE_DEVICES": "1,GPU-2222", pyshim.CUDADeviceEnv: "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, []int64{11, 12}},
		"worker, rank 1": {testGroup(cluster.IsolateWorker, w0, w1), w1,
			map[string]string{"CUDA_VISIBLE_DEVICES": "2", "NVIDIA_VISIBLE_DEVICES": "GPU-2222", pyshim.CUDADeviceEnv: "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, []int64{12}},
		"worker, two GPUs": {testGroup(cluster.IsolateWorker, cluster.WorkerSpec{GPUs: []int{0, 3}}), cluster.WorkerSpec{GPUs: []int{0, 3}},
			map[string]string{"CUDA_VISIBLE_DEVICES": "0,3", "NVIDIA_VISIBLE_DEVICES": "0,3", pyshim.CUDADeviceEnv: "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, []int64{10, 13}},
		"CPU job on a GPU node": {testGroup(cluster.IsolateJob, cluster.WorkerSpec{}), cluster.WorkerSpec{},
			map[string]string{"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "none"}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			env := map[string]string{pyshim.CUDADeviceEnv: "stale"}
			tt.g.gpuEnv(env, tt.ws)
			assert.Equal(t, tt.env, env)

			s := tt.g.workerCgroup(isolation{template: &cgroup.Spec{Pids: 7}, devices: true}, tt.ws, 3)
			require.NotNil(t, s)
			assert.Equal(t, "rtrain/job1/n1-attempt-0/rank-3", s.Name)
			assert.Equal(t, int64(7), s.Pids)
			denied := map[int64]bool{}
			for _, d := range s.DenyDevices {
				assert.Equal(t, cgroup.Device{Type: 'c', Major: 195, Minor: d.Minor}, d)
				denied[d.Minor] = true
			}
			var allowed []int64
			for minor := range int64(256) {
				if !denied[minor] {
					allowed = append(allowed, minor)
				}
			}
			// nvidia-modeset (254) and nvidiactl (255) stay open.
			assert.Equal(t, append(tt.allowed, 254, 255), allowed)
		})
	}
	g := testGroup(cluster.IsolateJob, w0)
	assert.Nil(t, g.workerCgroup(isolation{}, w0, 0), "no cgroups")
	s := g.workerCgroup(isolation{template: &cgroup.Spec{}}, w0, 0)
	assert.Empty(t, s.DenyDevices, "no device rules where the node has no devices controller")
}

func TestClaimGPUs(t *testing.T) {
	t.Setenv(discover.RuntimeDirEnv, t.TempDir())
	gpus := []sched.GPU{{Index: 0, Minor: 0}, {Index: 1, Minor: 1}, {Index: 2, Minor: 2, UUID: "GPU-abc"}}
	a, err := discover.ClaimGPUs(gpus, 2)
	require.NoError(t, err)
	assert.Equal(t, gpus[:2], a.GPUs)
	b, err := discover.ClaimGPUs(gpus, 1)
	require.NoError(t, err)
	assert.Equal(t, gpus[2:], b.GPUs, "the one GPU nobody holds")

	_, err = discover.ClaimGPUs(gpus, 1)
	require.ErrorIs(t, err, sched.ErrWouldWait)
	assert.Regexp(t, `^asked 1 GPU, 0 of this machine's 3 are free: GPU 0 \(pid \d+\), GPU 1 \(pid \d+\), GPU 2 \(pid \d+\) held by other rtrain jobs`, err.Error())

	a.Release()
	c, err := discover.ClaimGPUs(gpus, 2)
	require.NoError(t, err, "released GPUs are free again")
	assert.Equal(t, gpus[:2], c.GPUs)
	b.Release()
	_, err = discover.ClaimGPUs(gpus, 2)
	require.ErrorIs(t, err, sched.ErrWouldWait)
	assert.Regexp(t, `^asked 2 GPUs, 1 of this machine's 3 is free: GPU 0 \(pid \d+\), GPU 1 \(pid \d+\) held by other rtrain jobs`, err.Error())
	c.Release()
}
