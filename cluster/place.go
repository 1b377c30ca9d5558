package cluster

import (
	"errors"
	"fmt"
	"sort"
)

// ErrInfeasible is wrapped by errors for requests no state of the cluster
// could ever satisfy; such a request fails at once instead of waiting.
var ErrInfeasible = errors.New("cluster: request can never be placed")

// ErrWouldWait is wrapped when a request fits the cluster but not what is
// free now.
var ErrWouldWait = errors.New("cluster: not enough free resources now")

// placementError prints as its message alone and matches its sentinel.
type placementError struct {
	sentinel error
	msg      string
}

func (e *placementError) Error() string        { return e.msg }
func (e *placementError) Is(target error) bool { return target == e.sentinel }

func placeErr(sentinel error, format string, args ...any) error {
	return &placementError{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}

// Request is a placement group: Count bundles of Bundle each.
type Request struct {
	Count  int
	Bundle Resources
}

// Total is what the whole request asks for.
func (r Request) Total() Resources { return r.Bundle.Scale(r.Count) }

// NodeState is one node in a scheduling snapshot: what it has and what is
// free, with the free GPUs by index.
type NodeState struct {
	Node
	Free     Resources
	FreeGPUs []int
}

// Assignment is where one bundle goes.
type Assignment struct {
	NodeID string
	GPUs   []int
}

// Plan maps bundle i to Assignments[i]. Bundles on one node are contiguous,
// so ranks can be handed out in order and stay contiguous per node.
type Plan struct {
	Assignments []Assignment
}

// Place packs the request onto as few nodes as possible (Ray's PACK), in
// snapshot order. It never changes the snapshot. It fails with
// ErrInfeasible when the request exceeds what the nodes have in total, and
// with ErrWouldWait when only what is in use stands in the way.
func Place(nodes []NodeState, req Request) (Plan, error) {
	if req.Count <= 0 {
		return Plan{}, placeErr(ErrInfeasible, "asked %d bundles; a placement group needs at least one", req.Count)
	}
	if err := feasible(nodes, req); err != nil {
		return Plan{}, err
	}
	order := make([]int, len(nodes))
	for i := range order {
		order[i] = i
	}
	// Fullest first would fragment less, but a stable order keeps a job's
	// ranks on the same nodes run after run; bigger free space first packs
	// more bundles per node.
	sort.SliceStable(order, func(a, b int) bool {
		return capacity(nodes[order[a]].Free, req.Bundle) > capacity(nodes[order[b]].Free, req.Bundle)
	})
	var plan Plan
	left := req.Count
	for _, i := range order {
		n := nodes[i]
		k := min(capacity(n.Free, req.Bundle), left)
		gpus := n.FreeGPUs
		for range k {
			a := Assignment{NodeID: n.ID}
			if req.Bundle.GPU > 0 {
				a.GPUs = append([]int(nil), gpus[:req.Bundle.GPU]...)
				gpus = gpus[req.Bundle.GPU:]
			}
			plan.Assignments = append(plan.Assignments, a)
		}
		left -= k
		if left == 0 {
			return plan, nil
		}
	}
	return Plan{}, placeErr(ErrWouldWait, "asked %d × %s, %s free", req.Count, req.Bundle, describeFree(nodes))
}

// capacity is how many bundles fit in free.
func capacity(free, b Resources) int {
	n := 1 << 30
	if b.CPU > 0 {
		n = min(n, int((free.CPU+1e-9)/b.CPU))
	}
	if b.GPU > 0 {
		n = min(n, free.GPU/b.GPU)
	}
	if b.MemoryBytes > 0 {
		n = min(n, int(free.MemoryBytes/b.MemoryBytes))
	}
	return max(n, 0)
}

func feasible(nodes []NodeState, req Request) error {
	var total Resources
	fit := 0
	largest := 0
	for _, n := range nodes {
		total = total.Add(n.Total)
		c := capacity(n.Total, req.Bundle)
		fit += c
		largest = max(largest, c)
	}
	want := req.Total()
	switch {
	case want.GPU > total.GPU:
		return placeErr(ErrInfeasible, "asked %d GPUs, %s %d", want.GPU, clusterNoun(nodes), total.GPU)
	case want.CPU > total.CPU+1e-9:
		return placeErr(ErrInfeasible, "asked %g CPUs, %s %g", want.CPU, clusterNoun(nodes), total.CPU)
	case want.MemoryBytes > total.MemoryBytes:
		return placeErr(ErrInfeasible, "asked %s of memory, %s %s", FormatBytes(want.MemoryBytes), clusterNoun(nodes), FormatBytes(total.MemoryBytes))
	case fit < req.Count:
		return placeErr(ErrInfeasible, "asked %d bundles of %s, at most %d fit (the largest node holds %d)", req.Count, req.Bundle, fit, largest)
	}
	return nil
}

func clusterNoun(nodes []NodeState) string {
	if len(nodes) == 1 {
		return "this node has"
	}
	return fmt.Sprintf("the %d nodes have", len(nodes))
}

func describeFree(nodes []NodeState) string {
	var free Resources
	for _, n := range nodes {
		free = free.Add(n.Free)
	}
	return free.String()
}
