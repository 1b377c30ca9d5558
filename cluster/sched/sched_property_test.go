package sched

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func randomNode(rng *rand.Rand, id string) NodeState {
	n := node(id, float64(1+rng.IntN(32))/2, rng.IntN(9))
	n.Total.MemoryBytes = int64(1+rng.IntN(8)) << 30
	// Some nodes offer a custom resource, in halves.
	if rng.IntN(3) == 0 {
		n.Total.Custom = MustCustom(map[string]float64{"licence": float64(1+rng.IntN(8)) / 2})
	}
	n.Free = n.Total
	// Some nodes number their GPUs from elsewhere than 0.
	if off := rng.IntN(3); off > 0 {
		for i := range n.GPUs {
			n.GPUs[i].Index += off
			n.FreeGPUs[i] += off
		}
	}
	return n
}

func randomRequest(rng *rand.Rand) Request {
	b := Resources{CPU: float64(rng.IntN(9)) / 2, GPU: rng.IntN(3)}
	if rng.IntN(4) == 0 {
		b.MemoryBytes = int64(1+rng.IntN(4)) << 29
	}
	if rng.IntN(5) == 0 {
		b.Custom = MustCustom(map[string]float64{"licence": float64(1+rng.IntN(4)) / 4})
	}
	return Request{Count: 1 + rng.IntN(12), Bundle: b, Strategy: Strategy(rng.IntN(4))}
}

// randomUse takes some of n's resources as earlier jobs would.
func randomUse(rng *rand.Rand, n NodeState) NodeState {
	g := rng.IntN(n.Total.GPU + 1)
	n.Free.GPU -= g
	n.FreeGPUs = slices.Clone(n.FreeGPUs)
	for range g {
		k := rng.IntN(len(n.FreeGPUs))
		n.FreeGPUs = slices.Delete(n.FreeGPUs, k, k+1)
	}
	n.Free.CPU -= float64(rng.IntN(int(n.Total.CPU*2)+1)) / 2
	n.Free.MemoryBytes -= rng.Int64N(n.Total.MemoryBytes + 1)
	if l := n.Total.Custom.get("licence"); l > 0 {
		n.Free.Custom = n.Free.Custom.plus(MustCustom(map[string]float64{"licence": float64(rng.IntN(int(l*2)+1)) / 2}), -1)
	}
	return n
}

func freeCapacity(n NodeState, b Resources) int {
	free := n.Free
	free.GPU = min(free.GPU, len(n.FreeGPUs))
	return capacity(free, b)
}

// checkShape checks what a plan must be whatever the cluster: a bundle
// for each, contiguous per node, GPUs as asked, laid out by the strategy.
func checkShape(t testing.TB, req Request, plan Plan) {
	t.Helper()
	require.Len(t, plan.Assignments, req.Count, "bundles of %s", req)
	var order []string
	for _, a := range plan.Assignments {
		require.Len(t, a.GPUs, req.Bundle.GPU, "GPUs of a bundle of %s", req)
		if len(order) == 0 || order[len(order)-1] != a.NodeID {
			require.NotContains(t, order, a.NodeID, "bundles on a node are contiguous: %v", plan.Assignments)
			order = append(order, a.NodeID)
		}
	}
	switch req.Strategy {
	case StrictPack:
		require.Len(t, order, 1, "%s on one node", req)
	case StrictSpread:
		require.Len(t, order, req.Count, "%s on distinct nodes", req)
	}
}

// checkPlan checks a plan against the snapshot it was made for.
func checkPlan(t testing.TB, nodes []NodeState, req Request, plan Plan) {
	t.Helper()
	checkShape(t, req, plan)
	byID := map[string]NodeState{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	per := map[string]int{}
	gpus := map[string][]int{}
	for _, a := range plan.Assignments {
		n, ok := byID[a.NodeID]
		require.True(t, ok, "bundle on unknown node %s", a.NodeID)
		per[a.NodeID]++
		for _, g := range a.GPUs {
			require.Contains(t, n.FreeGPUs, g, "GPU %d of %s is not free", g, n.ID)
			require.NotContains(t, gpus[n.ID], g, "GPU %d of %s given twice", g, n.ID)
			gpus[n.ID] = append(gpus[n.ID], g)
		}
	}
	room := 0 // nodes that could take a bundle
	for _, n := range nodes {
		if c := freeCapacity(n, req.Bundle); c > 0 {
			room++
			if req.Strategy == Pack && c >= req.Count {
				require.Len(t, per, 1, "%s fits on %s alone", req, n.ID)
			}
		}
	}
	for id, k := range per {
		require.LessOrEqual(t, k, freeCapacity(byID[id], req.Bundle), "bundles of %s on %s", req, id)
	}
	if req.Strategy == Spread {
		require.Len(t, per, min(req.Count, room), "%s over the nodes with room", req)
		// As even as room allows: a node with more than one bundle over
		// another's is one whose room is spent.
		for a, ka := range per {
			for b, kb := range per {
				if ka > kb+1 {
					require.Equal(t, freeCapacity(byID[b], req.Bundle), kb, "%s: %s has %d, %s %d", req, a, ka, b, kb)
				}
			}
		}
	}
}

// TestPlaceRandom places random requests on random, partly used clusters:
// a plan respects room, strategy and contiguity; a refusal is the right one.
func TestPlaceRandom(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 1))
		nodes := make([]NodeState, rng.IntN(8))
		idle := make([]NodeState, len(nodes))
		for i := range nodes {
			idle[i] = randomNode(rng, fmt.Sprintf("n%d", i))
			nodes[i] = randomUse(rng, idle[i])
		}
		for range 10 {
			req := randomRequest(rng)
			name := fmt.Sprintf("seed %d: %s", seed, req)
			plan, err := Place(nodes, req)
			_, idleErr := Place(idle, req)
			var fit, most, room int
			for _, n := range nodes {
				c := freeCapacity(n, req.Bundle)
				fit, most = fit+min(c, req.Count), max(most, c)
				if c > 0 {
					room++
				}
			}
			fitsNow := map[Strategy]bool{Pack: fit >= req.Count, Spread: fit >= req.Count,
				StrictPack: most >= req.Count, StrictSpread: room >= req.Count}[req.Strategy]
			switch {
			case err == nil:
				require.True(t, fitsNow, name)
				checkPlan(t, nodes, req, plan)
			case idleErr != nil:
				require.ErrorIs(t, idleErr, ErrInfeasible, name)
				require.ErrorIs(t, err, ErrInfeasible, name)
			default:
				require.ErrorIs(t, err, ErrWouldWait, name)
				require.False(t, fitsNow, name)
			}
		}
	}
}

// checkHead checks the head's books: free and reserved add up to each
// node's total, no GPU is both free and held or held twice, the indexes
// agree with the nodes, and every reservation has the shape asked.
func checkHead(t testing.TB, h *Scheduler) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	type held struct {
		res  Resources
		gpus []int
	}
	on := map[*slot]*held{}
	for _, s := range h.order {
		on[s] = &held{}
	}
	for job, r := range h.reserved {
		plan := buildPlan(r.picks, r.req, r.gpus)
		checkShape(t, r.req, plan)
		i := 0
		for _, p := range r.picks {
			if p.s.removed {
				i += p.k
				continue
			}
			hd, ok := on[p.s]
			require.True(t, ok, "job %s holds a node the head does not know", job)
			hd.res = hd.res.Add(r.req.Bundle.Scale(p.k))
			for _, a := range plan.Assignments[i : i+p.k] {
				require.Equal(t, p.s.ID, a.NodeID)
				hd.gpus = append(hd.gpus, a.GPUs...)
			}
			i += p.k
		}
	}
	inBuckets := 0
	for _, b := range h.idx.buckets {
		inBuckets += len(b)
	}
	require.Equal(t, len(h.order), inBuckets, "nodes in the index")
	require.Equal(t, len(h.order), h.idx.nodes, "nodes counted")
	for _, s := range h.order {
		require.False(t, s.removed)
		require.Same(t, s, h.byID[s.ID])
		require.Equal(t, usableGPUs(s), s.gpus, "bucket of %s", s.ID)
		require.Same(t, s, h.idx.buckets[s.gpus][s.pos], "place of %s in its bucket", s.ID)
		hd := on[s]
		sum := s.Free.Add(hd.res)
		require.InDelta(t, s.Total.CPU, sum.CPU, 1e-6, "CPUs of %s: free %s, held %s", s.ID, s.Free, hd.res)
		require.Equal(t, s.Total.GPU, sum.GPU, "GPUs of %s", s.ID)
		require.Equal(t, s.Total.MemoryBytes, sum.MemoryBytes, "memory of %s", s.ID)
		require.GreaterOrEqual(t, s.Free.CPU, -1e-9, "free CPUs of %s", s.ID)
		require.GreaterOrEqual(t, s.Free.GPU, 0)
		require.GreaterOrEqual(t, s.Free.MemoryBytes, int64(0))
		require.Len(t, s.FreeGPUs, s.Free.GPU, "free GPU indices of %s", s.ID)
		require.True(t, slices.IsSorted(s.FreeGPUs))
		all := append(append([]int{}, s.FreeGPUs...), hd.gpus...)
		slices.Sort(all)
		want := []int{}
		for _, g := range s.GPUs {
			want = append(want, g.Index)
		}
		slices.Sort(want)
		require.Equal(t, want, all, "GPUs of %s, free and held", s.ID)
	}
	require.Len(t, h.queued, len(h.queue))
	for _, w := range h.queue {
		require.Same(t, w, h.queued[w.job])
	}
}

// checkIdle checks that nothing is held or queued and all is free.
func checkIdle(t testing.TB, h *Scheduler) {
	t.Helper()
	checkHead(t, h)
	require.Empty(t, h.Reservations())
	require.Empty(t, h.Pending())
	for _, n := range h.Nodes() {
		require.Equal(t, n.Total.GPU, n.Free.GPU, n.ID)
		require.InDelta(t, n.Total.CPU, n.Free.CPU, 1e-9, n.ID)
		require.False(t, math.IsNaN(n.Free.CPU))
	}
}
