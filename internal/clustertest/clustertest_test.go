package clustertest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rtrain/rtrain/internal/clustertest"
	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/trainer"
)

// The jobs' workers run under the reaper, which is this test binary, in a
// cgroup parent of the tests' own.
func TestMain(m *testing.M) {
	if launcher.RunReaperIfAsked() {
		return
	}
	goleak.VerifyTestMain(isolated{m})
}

type isolated struct{ m *testing.M }

func (i isolated) Run() int {
	var parent string
	return testutil.RunIsolated(i.m, &parent)
}

// A GPU node whose agent sends NVML stats with its heartbeats shows its
// GPUs free, and the stats, to a client: the status once showed 0 free on
// every node that sent stats.
func TestGPUNodeShowsFreeGPUsAndStats(t *testing.T) {
	lib := dgxa100.New()
	for _, d := range lib.Devices {
		d := d.(*dgxa100.Device)
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 40}, nvml.SUCCESS
		}
		d.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) { return nvml.PciInfo{}, nvml.SUCCESS }
		d.GetNvLinkStateFunc = func(int) (nvml.EnableState, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	}
	c := clustertest.New(t, clustertest.Agent{Name: "gpu", NVML: lib}, clustertest.Agent{Name: "cpu"})
	client := c.Client(t)

	var nodes map[string]trainer.NodeStatus
	require.Eventually(t, func() bool {
		st, err := client.Status(t.Context())
		require.NoError(t, err)
		nodes = map[string]trainer.NodeStatus{}
		for _, n := range st.Nodes {
			nodes[n.Node.ID] = n
		}
		return len(nodes) == 2 && len(nodes["gpu"].GPUStats) == 8
	}, 10*time.Second, clustertest.HeartbeatInterval, "both nodes, and the GPU node's stats")
	gpu := nodes["gpu"]
	assert.Equal(t, 8, gpu.Node.Total.GPU)
	assert.Equal(t, 8, gpu.Free.GPU, "free GPUs of a node that sends stats")
	assert.Equal(t, 2.0, gpu.Free.CPU)
	assert.Len(t, gpu.FreeGPUs, 8)
	assert.InDelta(t, 0.4, gpu.GPUStats[0].Utilization, 1e-9)
	assert.Equal(t, 2.0, nodes["cpu"].Free.CPU)
	assert.Zero(t, nodes["cpu"].Node.Total.GPU)
}

// A group whose workers exit right after their last report: the agent kept
// the staged files until the head had fetched them, so the last checkpoint
// is committed every time (the agent once removed them with the group and
// the job failed with "could not be fetched").
func TestLastCheckpointOfAFinishedGroupIsCommitted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs python jobs")
	}
	c := clustertest.New(t, clustertest.Agent{Name: "a"}, clustertest.Agent{Name: "b"})
	client := c.Client(t)
	for i := range 4 {
		cfg := trainer.Config{Script: "testdata/last_checkpoint.py", Workers: 2, Placement: "STRICT_SPREAD", Name: fmt.Sprintf("last-%d", i), WorkingDir: "testdata"}
		sub, err := client.Submit(t.Context(), cfg)
		require.NoError(t, err)
		res, err := client.Attach(t.Context(), sub.JobID, true, nil)
		require.NoError(t, err, "run %d", i)
		require.NotNil(t, res.Latest, "run %d", i)
		assert.Equal(t, 1, res.Latest.Index)
	}
}
