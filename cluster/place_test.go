package cluster

import (
	"errors"
	"strings"
	"testing"
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

func TestPlace(t *testing.T) {
	tests := []struct {
		name    string
		nodes   []NodeState
		req     Request
		wantErr error
		wantMsg string
		// wantNodes is the node of each bundle.
		wantNodes []string
		wantGPUs  [][]int
	}{
		{
			name:      "cpu workers share cores",
			nodes:     []NodeState{node("a", 2, 0)},
			req:       Request{Count: 4},
			wantNodes: []string{"a", "a", "a", "a"},
			wantGPUs:  [][]int{nil, nil, nil, nil},
		},
		{
			name:      "gpus handed out in order",
			nodes:     []NodeState{node("a", 8, 4)},
			req:       Request{Count: 2, Bundle: Resources{GPU: 2}},
			wantNodes: []string{"a", "a"},
			wantGPUs:  [][]int{{0, 1}, {2, 3}},
		},
		{
			name:    "gpus on a node without any",
			nodes:   []NodeState{node("a", 2, 0)},
			req:     Request{Count: 4, Bundle: Resources{GPU: 1}},
			wantErr: ErrInfeasible,
			wantMsg: "asked 4 GPUs, this node has 0",
		},
		{
			name:    "more cpus than the cluster has",
			nodes:   []NodeState{node("a", 2, 0), node("b", 2, 0)},
			req:     Request{Count: 3, Bundle: Resources{CPU: 2}},
			wantErr: ErrInfeasible,
			wantMsg: "asked 6 CPUs, the 2 nodes have 4",
		},
		{
			name:    "bundle larger than any node",
			nodes:   []NodeState{node("a", 4, 0), node("b", 4, 0)},
			req:     Request{Count: 1, Bundle: Resources{CPU: 6}},
			wantErr: ErrInfeasible,
			wantMsg: "at most 0 fit",
		},
		{
			name:      "packs the roomiest node first",
			nodes:     []NodeState{node("small", 2, 0), node("big", 8, 0)},
			req:       Request{Count: 5, Bundle: Resources{CPU: 2}},
			wantNodes: []string{"big", "big", "big", "big", "small"},
			wantGPUs:  [][]int{nil, nil, nil, nil, nil},
		},
		{
			name:    "no bundles",
			nodes:   []NodeState{node("a", 2, 0)},
			req:     Request{Count: 0},
			wantErr: ErrInfeasible,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := Place(tt.nodes, tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("err = %q, want it to say %q", err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Assignments) != len(tt.wantNodes) {
				t.Fatalf("%d assignments, want %d", len(plan.Assignments), len(tt.wantNodes))
			}
			for i, a := range plan.Assignments {
				if a.NodeID != tt.wantNodes[i] {
					t.Errorf("bundle %d on %s, want %s", i, a.NodeID, tt.wantNodes[i])
				}
				if len(a.GPUs) != len(tt.wantGPUs[i]) {
					t.Errorf("bundle %d GPUs %v, want %v", i, a.GPUs, tt.wantGPUs[i])
					continue
				}
				for k := range a.GPUs {
					if a.GPUs[k] != tt.wantGPUs[i][k] {
						t.Errorf("bundle %d GPUs %v, want %v", i, a.GPUs, tt.wantGPUs[i])
					}
				}
			}
		})
	}
}

func TestHeadReservesAllOrNothing(t *testing.T) {
	h := NewHead()
	if err := h.AddNode(node("a", 4, 2).Node); err != nil {
		t.Fatal(err)
	}
	gpu := Request{Count: 2, Bundle: Resources{GPU: 1}}
	if _, err := h.Reserve(t.Context(), "j1", gpu); err != nil {
		t.Fatal(err)
	}
	// Both GPUs are held: a second job must wait and take nothing.
	if _, err := h.Reserve(t.Context(), "j2", Request{Count: 1, Bundle: Resources{GPU: 1, CPU: 1}}); !errors.Is(err, ErrWouldWait) {
		t.Fatalf("second reservation: err = %v, want ErrWouldWait", err)
	}
	if free := h.Nodes()[0].Free; free.CPU != 4 || free.GPU != 0 {
		t.Errorf("free after a refused reservation = %v, want 4 CPUs, 0 GPUs", free)
	}
	h.Release("j1")
	h.Release("j1") // twice is harmless
	n := h.Nodes()[0]
	if n.Free.GPU != 2 || len(n.FreeGPUs) != 2 || n.FreeGPUs[0] != 0 || n.FreeGPUs[1] != 1 {
		t.Errorf("after release: free %v, GPUs %v; want 2 GPUs [0 1]", n.Free, n.FreeGPUs)
	}
	if _, err := h.Reserve(t.Context(), "j2", Request{Count: 1, Bundle: Resources{GPU: 1, CPU: 1}}); err != nil {
		t.Errorf("reservation after release: %v", err)
	}
}
