package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Head keeps the cluster's nodes and the reservations of running jobs.
// Reserve and Release are atomic: a job holds all of its bundles or none.
type Head struct {
	mu       sync.Mutex
	nodes    []*NodeState
	reserved map[string]reservation
}

type reservation struct {
	plan Plan
	req  Request
}

// NewHead returns a head with no nodes.
func NewHead() *Head { return &Head{reserved: map[string]reservation{}} }

// AddNode registers a node with all of its resources free.
func (h *Head) AddNode(n Node) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, have := range h.nodes {
		if have.ID == n.ID {
			return fmt.Errorf("cluster: node %s is already registered", n.ID)
		}
	}
	free := make([]int, len(n.GPUs))
	for i, g := range n.GPUs {
		free[i] = g.Index
	}
	h.nodes = append(h.nodes, &NodeState{Node: n, Free: n.Total, FreeGPUs: free})
	return nil
}

// Nodes returns a snapshot of the nodes.
func (h *Head) Nodes() []NodeState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snapshot()
}

func (h *Head) snapshot() []NodeState {
	out := make([]NodeState, len(h.nodes))
	for i, n := range h.nodes {
		out[i] = *n
		out[i].FreeGPUs = slices.Clone(n.FreeGPUs)
	}
	return out
}

// Reserve places req for job and takes its resources, or takes nothing. A
// request that has to wait fails with ErrWouldWait for now: the queue comes
// with the multi-node scheduler.
func (h *Head) Reserve(ctx context.Context, job string, req Request) (Plan, error) {
	if err := ctx.Err(); err != nil {
		return Plan{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.reserved[job]; dup {
		return Plan{}, fmt.Errorf("cluster: job %s already holds a reservation", job)
	}
	plan, err := Place(h.snapshot(), req)
	if err != nil {
		return Plan{}, err
	}
	for _, a := range plan.Assignments {
		n := h.node(a.NodeID)
		n.Free = n.Free.Sub(req.Bundle)
		n.FreeGPUs = slices.DeleteFunc(n.FreeGPUs, func(g int) bool { return slices.Contains(a.GPUs, g) })
	}
	h.reserved[job] = reservation{plan: plan, req: req}
	return plan, nil
}

// Release gives back what job holds. Releasing twice is harmless.
func (h *Head) Release(job string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.reserved[job]
	if !ok {
		return
	}
	delete(h.reserved, job)
	for _, a := range r.plan.Assignments {
		n := h.node(a.NodeID)
		if n == nil {
			continue
		}
		n.Free = n.Free.Add(r.req.Bundle)
		n.FreeGPUs = append(n.FreeGPUs, a.GPUs...)
		slices.Sort(n.FreeGPUs)
	}
}

func (h *Head) node(id string) *NodeState {
	for _, n := range h.nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}
