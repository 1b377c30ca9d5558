package head

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/sched"
)

// A node whose agent sends GPU stats with its heartbeats shows its free
// resources too (they were dropped for every GPU node), and a heartbeat
// without stats (NVML stopped answering) clears the stale ones.
func TestStatusShowsFreeResourcesAndCurrentGPUStats(t *testing.T) {
	h := NewRegistry(sched.New(), auth.Security{Token: "t"}, Options{}, slog.New(slog.DiscardHandler))
	t.Cleanup(h.Close)
	node := sched.Node{ID: "gpu-node", Addr: "127.0.0.1", AgentAddr: "127.0.0.1:1",
		Total: sched.Resources{CPU: 8, GPU: 2, MemoryBytes: 1 << 30},
		GPUs:  []sched.GPU{{Index: 0, Minor: 0}, {Index: 1, Minor: 1}}}
	_, err := h.Register(t.Context(), &clusterpb.RegisterRequest{Node: cluster.NodeToProto(node)})
	require.NoError(t, err)

	stats := []*clusterpb.GPUStat{{Index: 0, Utilization: 0.5}, {Index: 1, Utilization: 0.25}}
	_, err = h.Heartbeat(t.Context(), &clusterpb.HeartbeatRequest{NodeId: node.ID, AgentAddr: node.AgentAddr, Gpus: stats})
	require.NoError(t, err)
	ns := onlyNode(t, h.StatusReply())
	assert.Len(t, ns.GpuStats, 2)
	require.NotNil(t, ns.Free, "no free resources shown for a node that sends GPU stats")
	assert.Equal(t, 8.0, ns.Free.Cpu)
	assert.EqualValues(t, 2, ns.Free.Gpu)
	assert.Equal(t, []int32{0, 1}, ns.FreeGpus)

	_, err = h.Heartbeat(t.Context(), &clusterpb.HeartbeatRequest{NodeId: node.ID, AgentAddr: node.AgentAddr})
	require.NoError(t, err)
	ns = onlyNode(t, h.StatusReply())
	assert.Empty(t, ns.GpuStats, "stats from before NVML stopped answering are still shown")
	require.NotNil(t, ns.Free)
}

func onlyNode(t *testing.T, rep *clusterpb.StatusReply) *clusterpb.NodeStatus {
	t.Helper()
	require.Len(t, rep.Nodes, 1)
	return rep.Nodes[0]
}

func TestResourcesCrossTheWire(t *testing.T) {
	total := sched.Resources{CPU: 8, GPU: 2, MemoryBytes: 1 << 30, Custom: sched.MustCustom(map[string]float64{"a": 1, "b": 2})}
	assert.Equal(t, total, cluster.ResourcesFromProto(cluster.ResourcesToProto(total)), "custom resources cross the wire")
}

// A heartbeat keeps alive only the agent registered under its node id: a
// stale agent of the same name that comes back is told to register again.
func TestHeartbeatFromAnotherAgentReregisters(t *testing.T) {
	hs := NewRegistry(sched.New(), auth.Security{Token: "t"}, Options{}, slog.New(slog.DiscardHandler))
	t.Cleanup(hs.Close)
	node := &clusterpb.Node{Id: "gpu", Addr: "10.0.0.1", AgentAddr: "10.0.0.1:7000", Total: &clusterpb.Resources{Cpu: 1}}
	rep, err := hs.Register(t.Context(), &clusterpb.RegisterRequest{Node: node})
	require.NoError(t, err)
	require.Equal(t, "gpu", rep.NodeId)

	hb, err := hs.Heartbeat(t.Context(), &clusterpb.HeartbeatRequest{NodeId: "gpu", AgentAddr: "10.0.0.1:7000"})
	require.NoError(t, err)
	assert.False(t, hb.Reregister)
	hb, err = hs.Heartbeat(t.Context(), &clusterpb.HeartbeatRequest{NodeId: "gpu", AgentAddr: "10.0.0.9:7000"})
	require.NoError(t, err)
	assert.True(t, hb.Reregister, "another agent under the same id")

	// A clone registering under a taken name gets a name of its own.
	clone := &clusterpb.Node{Id: "gpu", Addr: "10.0.0.9", AgentAddr: "10.0.0.9:7000", Total: &clusterpb.Resources{Cpu: 1}}
	rep, err = hs.Register(t.Context(), &clusterpb.RegisterRequest{Node: clone})
	require.NoError(t, err)
	assert.Equal(t, "gpu-2", rep.NodeId)
}
