package trainer_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/head"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/trainer"
)

// Every field of the head's status reaches the Go values.
func TestStatusFromProtoCarriesEveryField(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rep := &clusterpb.StatusReply{
		Version: "1.2.3", HeartbeatTimeoutMs: 5000,
		Nodes: []*clusterpb.NodeStatus{
			{Node: &clusterpb.Node{Id: "n1", Addr: "10.0.0.1", AgentAddr: "10.0.0.1:7001", Iface: "eth0", Hostname: "h1",
				Total: &clusterpb.Resources{Cpu: 8, Gpu: 2, MemoryBytes: 16 << 30, Custom: map[string]float64{"licence": 2}},
				Gpus:  []*clusterpb.GPU{{Index: 0, Minor: 3, Uuid: "GPU-0", Name: "H100", MemoryBytes: 80 << 30, NvlinkPeers: []int32{1}}}},
				Free: &clusterpb.Resources{Cpu: 6, Gpu: 1, MemoryBytes: 8 << 30, Custom: map[string]float64{"licence": 0.5}}, FreeGpus: []int32{1},
				State: "alive", HeartbeatAgeMs: 400,
				GpuStats: []*clusterpb.GPUStat{{Index: 0, Utilization: 0.75, MemoryUsedBytes: 1 << 30, MemoryTotalBytes: 80 << 30}}},
			{Node: &clusterpb.Node{Id: "n2"}, State: "drained", HeartbeatAgeMs: 12000},
		},
		Jobs: []*clusterpb.JobSummary{
			{Id: "j1", Name: "train", State: "FAILED", Message: "rank 1 failed", Workers: 2, Attempts: 3,
				SubmittedUnixMs: t0.UnixMilli(), EndedUnixMs: t0.Add(time.Minute).UnixMilli(),
				Group: "sweep", Params: map[string]string{"lr": "0.1"}, Metric: "loss", Mode: "min", Best: ptr(0.25), BestIteration: 4},
			{Id: "j2", Name: "queued", State: "PENDING", Workers: 8, SubmittedUnixMs: t0.UnixMilli() + 1, Attempts: 1, Queued: true, Reason: "needs 8 GPUs"},
		},
	}
	want := trainer.ClusterStatus{
		Version: "1.2.3", HeartbeatTimeout: 5 * time.Second,
		Nodes: []trainer.NodeStatus{
			{Node: sched.Node{ID: "n1", Addr: "10.0.0.1", AgentAddr: "10.0.0.1:7001", Iface: "eth0", Hostname: "h1",
				Total: sched.Resources{CPU: 8, GPU: 2, MemoryBytes: 16 << 30, Custom: custom(t, "licence=2")},
				GPUs:  []sched.GPU{{Index: 0, Minor: 3, UUID: "GPU-0", Name: "H100", MemoryBytes: 80 << 30, NVLinkPeers: []int{1}}}},
				Free: sched.Resources{CPU: 6, GPU: 1, MemoryBytes: 8 << 30, Custom: custom(t, "licence=0.5")}, FreeGPUs: []int{1},
				State: trainer.NodeAlive, HeartbeatAge: 400 * time.Millisecond,
				GPUStats: []discover.GPUStat{{Index: 0, Utilization: 0.75, MemoryUsed: 1 << 30, MemoryTotal: 80 << 30}}},
			{Node: sched.Node{ID: "n2"}, State: trainer.NodeDrained, HeartbeatAge: 12 * time.Second},
		},
		Jobs: []trainer.JobSummary{
			{ID: "j1", Name: "train", State: trainer.StateFailed, Message: "rank 1 failed", Workers: 2, Attempts: 3,
				Submitted: t0, Ended: t0.Add(time.Minute),
				Group: "sweep", Params: map[string]string{"lr": "0.1"}, Metric: "loss", Mode: "min", Best: ptr(0.25), BestIteration: 4},
			{ID: "j2", Name: "queued", State: trainer.StatePending, Workers: 8, Submitted: t0.Add(time.Millisecond), Attempts: 1, Queued: true, Reason: "needs 8 GPUs"},
		},
	}
	got := trainer.StatusFromProto(rep)
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); d != "" {
		t.Errorf("StatusFromProto (-want +got):\n%s", d)
	}
	assert.True(t, got.Jobs[1].Ended.IsZero(), "a job that has not ended has no end")
	assert.Nil(t, got.Jobs[1].Best, "a job with no best has none")
}

func custom(t *testing.T, s string) sched.Custom {
	t.Helper()
	c, err := sched.ParseCustom(s)
	require.NoError(t, err)
	return c
}

// The client reads the cluster and its jobs as Go values, and a drain of
// a node the head does not know says so.
func TestClientStatusJobsAndDrain(t *testing.T) {
	h, c := remoteHead(t, head.Config{StateDir: t.TempDir()})
	dir := projectDir(t, 10)
	sub, err := c.Submit(t.Context(), trainer.Config{Script: filepath.Join(dir, "train.py"), WorkingDir: dir, Workers: 3})
	require.NoError(t, err)

	st, err := c.Status(t.Context())
	require.NoError(t, err)
	assert.NotEmpty(t, st.Version)
	assert.Positive(t, st.HeartbeatTimeout)
	assert.Empty(t, st.Nodes)
	require.Len(t, st.Jobs, 1)
	j := st.Jobs[0]
	assert.Equal(t, sub.JobID, j.ID)
	assert.Equal(t, sub.Name, j.Name)
	assert.Equal(t, 3, j.Workers)
	assert.WithinDuration(t, time.Now(), j.Submitted, time.Minute)
	assert.Equal(t, h.Status().Jobs[0].ID, j.ID, "the head's own Status is the same cluster")

	jobs, err := c.Jobs(t.Context())
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	assert.Equal(t, sub.JobID, jobs[0].ID)

	err = c.Drain(t.Context(), "nope", "drained by a test")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `drain node nope at `+c.Addr())
	assert.Contains(t, err.Error(), `no node "nope"`)

	require.NoError(t, c.Stop(t.Context(), sub.JobID))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, _ := c.Attach(ctx, sub.JobID, true, nil)
	require.NotNil(t, res)
	jobs, err = c.Jobs(t.Context())
	require.NoError(t, err)
	assert.Equal(t, res.State, jobs[0].State)
	assert.False(t, jobs[0].Ended.IsZero(), "an ended job has its end")
}
