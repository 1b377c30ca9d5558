package sched

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInfeasible is wrapped by errors for requests no state of the cluster
// could ever satisfy; such a request fails at once instead of waiting.
var ErrInfeasible = errors.New("sched: request can never be placed")

// ErrWouldWait is wrapped when a request fits the cluster but not what is
// free now.
var ErrWouldWait = errors.New("sched: not enough free resources now")

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

// WouldWait is an ErrWouldWait that prints as the message given: for
// resources held outside the scheduler (GPUs another process claimed).
func WouldWait(format string, args ...any) error {
	return placeErr(ErrWouldWait, format, args...)
}

// Strategy is how a placement group's bundles are laid over nodes, with
// Ray's four meanings. The zero value is Pack.
type Strategy int

const (
	// Pack puts the bundles on as few nodes as possible, best effort: on
	// one node when one holds them all, else over the roomiest nodes.
	Pack Strategy = iota
	// Spread puts every bundle on a node of its own while there are nodes
	// enough, best effort: with fewer nodes than bundles it shares them out
	// as evenly as their room allows.
	Spread
	// StrictPack puts all bundles on one node, or waits for one to have
	// room.
	StrictPack
	// StrictSpread puts every bundle on a different node, or waits for
	// enough nodes to have room.
	StrictSpread
)

var strategyNames = [...]string{Pack: "PACK", Spread: "SPREAD", StrictPack: "STRICT_PACK", StrictSpread: "STRICT_SPREAD"}

// String is Ray's name for s: "PACK", "STRICT_SPREAD".
func (s Strategy) String() string {
	if s < 0 || int(s) >= len(strategyNames) {
		return fmt.Sprintf("Strategy(%d)", int(s))
	}
	return strategyNames[s]
}

func (s Strategy) valid() bool { return s >= 0 && int(s) < len(strategyNames) }

// ParseStrategy reads a strategy by its Ray name, in any case.
func ParseStrategy(s string) (Strategy, error) {
	for i, name := range strategyNames {
		if strings.EqualFold(s, name) {
			return Strategy(i), nil
		}
	}
	return 0, fmt.Errorf("cluster: unknown placement strategy %q: want one of %s", s, strings.Join(strategyNames[:], ", "))
}

// Request is a placement group: Count bundles of Bundle each, laid out by
// Strategy.
type Request struct {
	Count  int
	Bundle Resources
	// Strategy's zero value is Pack.
	Strategy Strategy
}

// Total is what the whole request asks for.
func (r Request) Total() Resources { return r.Bundle.Scale(r.Count) }

// String is the request as a person reads it: "4 × {CPU: 2, GPU: 1} with PACK".
func (r Request) String() string {
	return fmt.Sprintf("%d × %s with %s", r.Count, r.Bundle, r.Strategy)
}

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

// Place lays the request over a snapshot of the nodes by its strategy (see
// Strategy) and hands out the GPUs from each node's FreeGPUs in order. It
// never changes the snapshot. It fails with ErrInfeasible when no node
// could ever free enough for the strategy, and with ErrWouldWait when only
// what is in use stands in the way.
//
// Scheduler schedules with the same code over indexes it keeps up to date; Place
// builds them from the snapshot, which costs O(nodes) a call.
func Place(nodes []NodeState, req Request) (Plan, error) {
	var x index
	x.init()
	slots := make([]slot, len(nodes))
	for i := range nodes {
		slots[i] = slot{NodeState: nodes[i]}
		x.add(&slots[i])
	}
	if err := x.feasible(req); err != nil {
		return Plan{}, err
	}
	picks := x.plan(req)
	if picks == nil {
		return Plan{}, x.wouldWait(req)
	}
	return buildPlan(picks, req, freeGPUs(picks, req)), nil
}

// freeGPUs is the GPUs picks would hand out, bundle by bundle: the front of
// each node's FreeGPUs.
func freeGPUs(picks []pick, req Request) []int {
	g := req.Bundle.GPU
	if g <= 0 {
		return nil
	}
	all := make([]int, 0, req.Count*g)
	for _, p := range picks {
		all = append(all, p.s.FreeGPUs[:p.k*g]...)
	}
	return all
}

// buildPlan turns picks and the GPUs they hand out into a plan of its own.
// It reads only the nodes' IDs, which never change, so it needs no lock.
func buildPlan(picks []pick, req Request, gpus []int) Plan {
	g := req.Bundle.GPU
	plan := Plan{Assignments: make([]Assignment, 0, req.Count)}
	if g > 0 {
		gpus = slices.Clone(gpus)
	}
	i := 0
	for _, p := range picks {
		for range p.k {
			a := Assignment{NodeID: p.s.ID}
			if g > 0 {
				a.GPUs = gpus[i : i+g : i+g]
				i += g
			}
			plan.Assignments = append(plan.Assignments, a)
		}
	}
	return plan
}

// noFit stands for "any number" where a bundle asks nothing of a resource.
const noFit = 1 << 30

// capacity is how many bundles fit in free.
func capacity(free, b Resources) int {
	n := baseCapacity(free.CPU, free.GPU, free.MemoryBytes, &b)
	if b.Custom != "" {
		n = min(n, b.Custom.capacity(free.Custom))
	}
	return n
}

// baseCapacity is capacity without custom resources, from the free
// amounts. It stays small enough to inline into the scheduler's loops over
// nodes, which check custom resources only for the requests that ask for
// some.
func baseCapacity(cpu float64, gpu int, mem int64, b *Resources) int {
	n := noFit
	if b.CPU > 0 {
		n = min(n, int((cpu+1e-9)/b.CPU))
	}
	if b.GPU > 0 {
		n = min(n, gpu/b.GPU)
	}
	if b.MemoryBytes > 0 {
		n = min(n, int(mem/b.MemoryBytes))
	}
	return max(n, 0)
}

func clusterNoun(nodes int) string {
	if nodes == 1 {
		return "this node has"
	}
	return fmt.Sprintf("the %d nodes have", nodes)
}

// cpuNoun is "1 CPU" or "0.5 CPUs".
func cpuNoun(n float64) string {
	if n == 1 {
		return "1 CPU"
	}
	return fmt.Sprintf("%g CPUs", n)
}

// nodesThatHoldOne says how few of the cluster's nodes can hold a bundle
// of a STRICT_SPREAD request, which needs one node for each.
func nodesThatHoldOne(n, nodes int) string {
	switch {
	case nodes == 1 && n == 1:
		return "this node is the only one"
	case nodes == 1:
		return "this node cannot hold one"
	}
	return fmt.Sprintf("only %d of the %d nodes can hold one", n, nodes)
}
