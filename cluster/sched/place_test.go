package sched

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func node(id string, cpu float64, gpus int) NodeState {
	n := Node{ID: id, Addr: id, Total: Resources{CPU: cpu, GPU: gpus, MemoryBytes: 64 << 30}}
	free := make([]int, gpus)
	for i := range gpus {
		n.GPUs = append(n.GPUs, GPU{Index: i, Minor: i})
		free[i] = i
	}
	return NodeState{Node: n, Free: n.Total, FreeGPUs: free}
}

// withCustom is n offering the custom resources c.
func withCustom(n NodeState, c Custom) NodeState {
	n.Total.Custom, n.Free.Custom = c, c
	return n
}

// used is n with bundles of b already taken, from the front of its GPUs.
func used(n NodeState, b Resources, k int) NodeState {
	n.Free = n.Free.Sub(b.Scale(k))
	n.FreeGPUs = n.FreeGPUs[b.GPU*k:]
	return n
}

func TestParseStrategy(t *testing.T) {
	for _, s := range []Strategy{Pack, Spread, StrictPack, StrictSpread} {
		got, err := ParseStrategy(strings.ToLower(s.String()))
		require.NoError(t, err)
		require.Equal(t, s, got)
	}
	_, err := ParseStrategy("tight")
	require.ErrorContains(t, err, `unknown placement strategy "tight": want one of PACK, SPREAD, STRICT_PACK, STRICT_SPREAD`)
	require.Equal(t, "Strategy(9)", Strategy(9).String())
	var zero Request
	require.Equal(t, Pack, zero.Strategy, "zero strategy")
}

func TestPlace(t *testing.T) {
	gpu := Resources{CPU: 2, GPU: 1}
	tests := map[string]struct {
		nodes   []NodeState
		req     Request
		wantErr error
		wantMsg string
		// wantNodes is the node of each bundle.
		wantNodes []string
		wantGPUs  [][]int
	}{
		"cpu workers share cores": {
			nodes:     []NodeState{node("a", 2, 0)},
			req:       Request{Count: 4},
			wantNodes: []string{"a", "a", "a", "a"},
			wantGPUs:  [][]int{nil, nil, nil, nil},
		},
		"gpus handed out in order": {
			nodes:     []NodeState{node("a", 8, 4)},
			req:       Request{Count: 2, Bundle: Resources{GPU: 2}},
			wantNodes: []string{"a", "a"},
			wantGPUs:  [][]int{{0, 1}, {2, 3}},
		},
		"gpus on a node without any": {
			nodes:   []NodeState{node("a", 2, 0)},
			req:     Request{Count: 4, Bundle: Resources{GPU: 1}},
			wantErr: ErrInfeasible,
			wantMsg: "asked 4 GPUs, this node has 0 (4 × {CPU: 0, GPU: 1} with PACK)",
		},
		"one gpu on a node without any": {
			nodes:   []NodeState{node("a", 2, 0)},
			req:     Request{Count: 1, Bundle: Resources{GPU: 1}},
			wantErr: ErrInfeasible,
			wantMsg: "asked 1 GPU, this node has 0",
		},
		"one cpu more than the node has": {
			nodes:   []NodeState{node("a", 0, 0)},
			req:     Request{Count: 1, Bundle: Resources{CPU: 1}},
			wantErr: ErrInfeasible,
			wantMsg: "asked 1 CPU, this node has 0",
		},
		"more cpus than the cluster has": {
			nodes:   []NodeState{node("a", 2, 0), node("b", 2, 0)},
			req:     Request{Count: 3, Bundle: Resources{CPU: 2}},
			wantErr: ErrInfeasible,
			wantMsg: "asked 6 CPUs, the 2 nodes have 4",
		},
		"custom resources go where they are": {
			nodes:     []NodeState{node("a", 8, 0), withCustom(node("b", 8, 0), "licence=2"), withCustom(node("c", 8, 0), "licence=1")},
			req:       Request{Count: 3, Bundle: Resources{CPU: 1, Custom: "licence=1"}},
			wantNodes: []string{"b", "b", "c"},
			wantGPUs:  [][]int{nil, nil, nil},
		},
		"fractional custom resources": {
			nodes:     []NodeState{withCustom(node("a", 8, 0), "licence=1")},
			req:       Request{Count: 4, Bundle: Resources{Custom: "licence=0.25"}},
			wantNodes: []string{"a", "a", "a", "a"},
			wantGPUs:  [][]int{nil, nil, nil, nil},
		},
		"custom resource no node has": {
			nodes:   []NodeState{withCustom(node("a", 8, 0), "licence=1")},
			req:     Request{Count: 1, Bundle: Resources{Custom: "accel=1"}},
			wantErr: ErrInfeasible,
			wantMsg: `asked 1 of custom resource "accel", this node has 0 (1 × {CPU: 0, accel: 1} with PACK); a node offers it with --resources`,
		},
		"more of a custom resource than the cluster has": {
			nodes:   []NodeState{withCustom(node("a", 8, 0), "licence=1"), withCustom(node("b", 8, 0), "licence=1")},
			req:     Request{Count: 3, Bundle: Resources{Custom: "licence=1"}},
			wantErr: ErrInfeasible,
			wantMsg: `asked 3 of custom resource "licence", the 2 nodes have 2`,
		},
		"bundle larger than any node": {
			nodes:   []NodeState{node("a", 4, 0), node("b", 4, 0)},
			req:     Request{Count: 1, Bundle: Resources{CPU: 6}},
			wantErr: ErrInfeasible,
			wantMsg: "asked 1 × {CPU: 6} with PACK; at most 0 fit on the 2 nodes, the largest node holds 0",
		},
		"strict spread over the only node": {
			nodes:   []NodeState{node("a", 8, 0)},
			req:     Request{Count: 1, Bundle: Resources{CPU: 16}, Strategy: StrictSpread},
			wantErr: ErrInfeasible,
			wantMsg: "asked 1 × {CPU: 16} with STRICT_SPREAD; this node cannot hold one",
		},
		"no nodes": {
			req:     Request{Count: 1},
			wantErr: ErrInfeasible,
			wantMsg: "asked 1 × {CPU: 0} with PACK; the cluster has no nodes yet: start an agent on each machine with `rtrain start --address HEAD:PORT`",
		},
		"no bundles": {
			nodes:   []NodeState{node("a", 2, 0)},
			req:     Request{Count: 0},
			wantErr: ErrInfeasible,
			wantMsg: "asked 0 bundles",
		},
		"negative bundle": {
			nodes:   []NodeState{node("a", 2, 0)},
			req:     Request{Count: 1, Bundle: Resources{CPU: -1}},
			wantErr: ErrInfeasible,
			wantMsg: "cannot be negative",
		},
		"unknown strategy": {
			nodes:   []NodeState{node("a", 2, 0)},
			req:     Request{Count: 1, Strategy: 7},
			wantErr: ErrInfeasible,
			wantMsg: "the strategies are",
		},

		// PACK
		"pack: roomiest node first": {
			nodes:     []NodeState{node("small", 2, 0), node("big", 8, 0)},
			req:       Request{Count: 5, Bundle: Resources{CPU: 2}},
			wantNodes: []string{"big", "big", "big", "big", "small"},
			wantGPUs:  [][]int{nil, nil, nil, nil, nil},
		},
		"pack: one node when one holds all, the tightest": {
			nodes:     []NodeState{node("a", 16, 8), used(node("b", 16, 8), gpu, 5), node("c", 16, 8)},
			req:       Request{Count: 3, Bundle: gpu},
			wantNodes: []string{"b", "b", "b"},
			wantGPUs:  [][]int{{5}, {6}, {7}},
		},
		"pack: roomiest, then the tightest for the rest": {
			nodes: []NodeState{used(node("a", 16, 8), gpu, 6), node("b", 16, 8), used(node("c", 16, 8), gpu, 4),
				used(node("d", 16, 8), gpu, 7)},
			req:       Request{Count: 10, Bundle: gpu},
			wantNodes: []string{"b", "b", "b", "b", "b", "b", "b", "b", "a", "a"},
			wantGPUs:  [][]int{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {6}, {7}},
		},
		"pack: waits when only use stands in the way": {
			nodes:   []NodeState{used(node("a", 16, 2), gpu, 1), used(node("b", 16, 2), gpu, 2)},
			req:     Request{Count: 2, Bundle: gpu},
			wantErr: ErrWouldWait,
			wantMsg: "asked 2 × {CPU: 2, GPU: 1} with PACK; free now {CPU: 26, GPU: 1, memory: 128.0GiB}, room for 1 bundle on 1 node, at most 1 on one",
		},

		// SPREAD
		"spread: one per node, fullest first": {
			nodes:     []NodeState{node("a", 16, 8), used(node("b", 16, 8), gpu, 6), node("c", 16, 8), used(node("d", 16, 8), gpu, 7)},
			req:       Request{Count: 3, Bundle: gpu, Strategy: Spread},
			wantNodes: []string{"d", "b", "a"},
			wantGPUs:  [][]int{{7}, {6}, {0}},
		},
		"spread: fewer nodes than bundles shares them evenly": {
			nodes:     []NodeState{node("a", 16, 8), node("b", 16, 8), used(node("c", 16, 8), gpu, 7)},
			req:       Request{Count: 7, Bundle: gpu, Strategy: Spread},
			wantNodes: []string{"c", "a", "a", "a", "b", "b", "b"},
			wantGPUs:  [][]int{{7}, {0}, {1}, {2}, {0}, {1}, {2}},
		},
		"spread: cpu bundles": {
			nodes:     []NodeState{node("a", 4, 0), node("b", 8, 0)},
			req:       Request{Count: 5, Bundle: Resources{CPU: 1}, Strategy: Spread},
			wantNodes: []string{"a", "a", "b", "b", "b"},
			wantGPUs:  [][]int{nil, nil, nil, nil, nil},
		},
		"spread: waits": {
			nodes:   []NodeState{used(node("a", 16, 2), gpu, 2), used(node("b", 16, 2), gpu, 1)},
			req:     Request{Count: 2, Bundle: gpu, Strategy: Spread},
			wantErr: ErrWouldWait,
		},

		// STRICT_PACK
		"strict pack: the tightest node that holds all": {
			nodes:     []NodeState{node("a", 16, 8), used(node("b", 16, 8), gpu, 4), used(node("c", 16, 8), gpu, 6)},
			req:       Request{Count: 4, Bundle: gpu, Strategy: StrictPack},
			wantNodes: []string{"b", "b", "b", "b"},
			wantGPUs:  [][]int{{4}, {5}, {6}, {7}},
		},
		"strict pack: infeasible beyond the largest node": {
			nodes:   []NodeState{node("a", 16, 2), node("b", 16, 2)},
			req:     Request{Count: 4, Bundle: gpu, Strategy: StrictPack},
			wantErr: ErrInfeasible,
			wantMsg: "asked 4 × {CPU: 2, GPU: 1} with STRICT_PACK; the largest node holds 2",
		},
		"strict pack: waits though the cluster has room": {
			nodes:   []NodeState{used(node("a", 16, 4), gpu, 2), used(node("b", 16, 4), gpu, 2)},
			req:     Request{Count: 3, Bundle: gpu, Strategy: StrictPack},
			wantErr: ErrWouldWait,
			wantMsg: "room for 4 bundles on 2 nodes, at most 2 on one",
		},

		// STRICT_SPREAD
		"strict spread: one per node": {
			nodes:     []NodeState{node("a", 16, 8), node("b", 16, 8), node("c", 16, 8)},
			req:       Request{Count: 3, Bundle: gpu, Strategy: StrictSpread},
			wantNodes: []string{"a", "b", "c"},
			wantGPUs:  [][]int{{0}, {0}, {0}},
		},
		"strict spread: infeasible with fewer nodes than bundles": {
			nodes:   []NodeState{node("a", 16, 8), node("b", 16, 8), node("c", 2, 0)},
			req:     Request{Count: 3, Bundle: gpu, Strategy: StrictSpread},
			wantErr: ErrInfeasible,
			wantMsg: "asked 3 × {CPU: 2, GPU: 1} with STRICT_SPREAD; only 2 of the 3 nodes can hold one",
		},
		"strict spread: waits for a third node to free a GPU": {
			nodes:   []NodeState{node("a", 16, 8), node("b", 16, 8), used(node("c", 16, 1), gpu, 1)},
			req:     Request{Count: 3, Bundle: gpu, Strategy: StrictSpread},
			wantErr: ErrWouldWait,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			plan, err := Place(tt.nodes, tt.req)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Contains(t, err.Error(), tt.wantMsg)
				require.NotContains(t, err.Error(), "\n")
				return
			}
			require.NoError(t, err)
			var nodes []string
			var gpus [][]int
			for _, a := range plan.Assignments {
				nodes, gpus = append(nodes, a.NodeID), append(gpus, a.GPUs)
			}
			require.Equal(t, tt.wantNodes, nodes, "node of each bundle")
			require.Equal(t, tt.wantGPUs, gpus, "GPUs of each bundle")
		})
	}
}
