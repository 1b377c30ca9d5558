package sched

import (
	"cmp"
	"slices"

	"github.com/rtrain/rtrain/internal/text"
)

// The scheduler's indexes. Nodes sit in buckets by free GPU count, so a
// request for GPU bundles looks at the nodes whose free GPUs can matter and
// stops as soon as it has enough: placing k bundles costs about O(k) plus
// the empty buckets skipped, not O(nodes). Bundles without GPUs have no such
// bound and scan every node. Feasibility looks at node shapes (distinct
// totals), of which a cluster has few.

// slot is one node in the index.
type slot struct {
	NodeState
	// gpus is the free GPUs that can be handed out, min(Free.GPU,
	// len(FreeGPUs)): the bucket the slot is in, at pos.
	gpus, pos int
	// shape is Total as scheduling sees it.
	shape Resources
	// removed is set once the node is forgotten: what reservations still
	// hold on it is never given back to it.
	removed bool
	// mark is the epoch of the plan that last took the slot.
	mark uint64
}

type index struct {
	buckets [][]*slot
	nodes   int
	// shapes counts the nodes of each shape.
	shapes map[Resources]int
	epoch  uint64
}

func (x *index) init() { x.shapes = map[Resources]int{} }

func usableGPUs(s *slot) int { return max(0, min(s.Free.GPU, len(s.FreeGPUs))) }

func (x *index) add(s *slot) {
	s.shape = s.Total
	s.shape.GPU = max(0, min(s.Total.GPU, len(s.GPUs)))
	x.shapes[s.shape]++
	x.nodes++
	x.link(s)
}

func (x *index) remove(s *slot) {
	x.unlink(s)
	if x.shapes[s.shape]--; x.shapes[s.shape] == 0 {
		delete(x.shapes, s.shape)
	}
	x.nodes--
	s.removed = true
}

func (x *index) link(s *slot) {
	s.gpus = usableGPUs(s)
	for len(x.buckets) <= s.gpus {
		x.buckets = append(x.buckets, nil)
	}
	s.pos = len(x.buckets[s.gpus])
	x.buckets[s.gpus] = append(x.buckets[s.gpus], s)
}

func (x *index) unlink(s *slot) {
	b := x.buckets[s.gpus]
	last := b[len(b)-1]
	b[s.pos], last.pos = last, s.pos
	b[len(b)-1] = nil
	x.buckets[s.gpus] = b[:len(b)-1]
}

// moved puts s in the bucket its free GPUs now call for.
func (x *index) moved(s *slot) {
	if usableGPUs(s) != s.gpus {
		x.unlink(s)
		x.link(s)
	}
}

func (x *index) capacity(s *slot, b Resources) int {
	n := baseCapacity(s.Free.CPU, s.gpus, s.Free.MemoryBytes, &b)
	if b.Custom != "" {
		n = min(n, b.Custom.capacity(s.Free.Custom))
	}
	return n
}

// pick is k bundles on one node.
type pick struct {
	s *slot
	k int
}

// plan finds where req's bundles go now, or returns nil when they do not
// fit. It changes nothing but the slots' marks.
func (x *index) plan(req Request) []pick {
	n, b := req.Count, req.Bundle
	if !x.mayFit(n, b, req.Strategy) {
		return nil
	}
	x.epoch++
	switch req.Strategy {
	case StrictPack:
		if s := x.bestFit(b, n); s != nil {
			return []pick{{s, n}}
		}
		return nil
	case Pack:
		return x.pack(b, n)
	default:
		return x.spread(b, n, req.Strategy == StrictSpread)
	}
}

// mayFit rules out in O(buckets) a GPU request that the free GPUs cannot
// hold, which keeps a waiting request cheap to retry.
func (x *index) mayFit(n int, b Resources, st Strategy) bool {
	if b.GPU <= 0 {
		return true
	}
	fit, nodes, most := 0, 0, 0
	for g := b.GPU; g < len(x.buckets); g++ {
		if k := len(x.buckets[g]); k > 0 {
			fit += k * (g / b.GPU)
			nodes += k
			most = g / b.GPU
		}
	}
	switch st {
	case StrictPack:
		return most >= n
	case StrictSpread:
		return nodes >= n
	}
	return fit >= n
}

// bestFit is the node with the fewest free GPUs that holds n bundles, so
// roomy nodes stay whole for the gangs that need them; without GPUs in the
// bundle, the one that holds the fewest bundles. Marked slots are skipped.
func (x *index) bestFit(b Resources, n int) *slot {
	if b.GPU > 0 {
		for g := n * b.GPU; g < len(x.buckets); g++ {
			for _, s := range x.buckets[g] {
				if s.mark != x.epoch && x.capacity(s, b) >= n {
					return s
				}
			}
		}
		return nil
	}
	var best *slot
	bestCap := 0
	x.each(func(s *slot) bool {
		if c := x.capacity(s, b); s.mark != x.epoch && c >= n && (best == nil || c < bestCap) {
			best, bestCap = s, c
		}
		return best == nil || bestCap > n
	})
	return best
}

// each calls f on every slot, roomiest bucket first, until f returns false.
func (x *index) each(f func(*slot) bool) {
	for g := len(x.buckets) - 1; g >= 0; g-- {
		for _, s := range x.buckets[g] {
			if !f(s) {
				return
			}
		}
	}
}

// pack is one node when one holds all n; else the roomiest nodes, the last
// of them replaced by the tightest node that holds what is left.
func (x *index) pack(b Resources, n int) []pick {
	if s := x.bestFit(b, n); s != nil {
		return []pick{{s, n}}
	}
	var cands []pick
	sum := 0
	x.each(func(s *slot) bool {
		if b.GPU > 0 && s.gpus < b.GPU {
			return false
		}
		if c := x.capacity(s, b); c > 0 {
			cands = append(cands, pick{s, c})
			sum += c
		}
		// Without GPUs the buckets say nothing of room: look at all.
		return b.GPU == 0 || sum < n
	})
	if sum < n {
		return nil
	}
	slices.SortStableFunc(cands, func(p, q pick) int { return cmp.Compare(q.k, p.k) })
	left := n
	for i := range cands {
		cands[i].k = min(cands[i].k, left)
		cands[i].s.mark = x.epoch
		if left -= cands[i].k; left == 0 {
			cands = cands[:i+1]
			break
		}
	}
	last := &cands[len(cands)-1]
	last.s.mark = 0
	if s := x.bestFit(b, last.k); s != nil {
		last.s = s
	}
	last.s.mark = x.epoch
	return cands
}

// spread is n distinct nodes, the fullest that hold a bundle first, so
// roomy nodes stay whole. Strict, that or nothing; else with fewer nodes
// than bundles, the bundles are shared out over the nodes there are as
// evenly as their room allows.
func (x *index) spread(b Resources, n int, strict bool) []pick {
	var cands []pick
	if b.GPU > 0 {
	scan:
		for g := b.GPU; g < len(x.buckets); g++ {
			for _, s := range x.buckets[g] {
				if c := x.capacity(s, b); c > 0 {
					if cands = append(cands, pick{s, c}); len(cands) == n {
						break scan
					}
				}
			}
		}
	} else {
		x.each(func(s *slot) bool {
			if c := x.capacity(s, b); c > 0 {
				cands = append(cands, pick{s, c})
			}
			return true
		})
		slices.SortStableFunc(cands, func(p, q pick) int { return cmp.Compare(p.k, q.k) })
		cands = cands[:min(len(cands), n)]
	}
	if len(cands) == n {
		for i := range cands {
			cands[i].k = 1
		}
		return cands
	}
	if strict || len(cands) == 0 {
		return nil
	}
	room := make([]int, len(cands))
	total := 0
	for i, c := range cands {
		room[i] = c.k
		total += min(c.k, n)
		cands[i].k = 0
	}
	if total < n {
		return nil
	}
	// Rounds of one bundle per node with room, the roomiest first, so an
	// odd bundle goes where there is most room.
	for left := n; left > 0; {
		for i := len(cands) - 1; i >= 0; i-- {
			if cands[i].k < room[i] {
				cands[i].k++
				if left--; left == 0 {
					break
				}
			}
		}
	}
	return slices.DeleteFunc(cands, func(p pick) bool { return p.k == 0 })
}

// fit is how a request sizes against a set of nodes: bundles in all, nodes
// that hold at least one, and the most one node holds.
type fit struct{ total, nodes, most int }

func (f *fit) add(count, c int) {
	f.total = min(f.total+count*c, noFit)
	if c > 0 {
		f.nodes += count
	}
	f.most = max(f.most, c)
}

// feasible fails with ErrInfeasible when req could not be placed even on an
// idle cluster of these nodes.
func (x *index) feasible(req Request) error {
	b := req.Bundle
	switch {
	case req.Count <= 0:
		return placeErr(ErrInfeasible, "asked %d bundles; a placement group needs at least one", req.Count)
	case b.CPU < 0 || b.GPU < 0 || b.MemoryBytes < 0:
		return placeErr(ErrInfeasible, "asked bundles of %s; amounts cannot be negative", b)
	case !req.Strategy.valid():
		return placeErr(ErrInfeasible, "asked %s; the strategies are PACK, SPREAD, STRICT_PACK and STRICT_SPREAD", req)
	case x.nodes == 0:
		return placeErr(ErrInfeasible, "asked %s; the cluster has no nodes yet: start an agent on each machine with `rtrain start --address HEAD:PORT`", req)
	}
	var f fit
	var total Resources
	for shape, count := range x.shapes {
		f.add(count, capacity(shape, b))
		total = total.Add(shape.Scale(count))
	}
	want := req.Total()
	switch req.Strategy {
	case StrictPack:
		if f.most < req.Count {
			return placeErr(ErrInfeasible, "asked %s; the largest node holds %d", req, f.most)
		}
	case StrictSpread:
		if f.nodes < req.Count {
			return placeErr(ErrInfeasible, "asked %s; %s", req, nodesThatHoldOne(f.nodes, x.nodes))
		}
	default:
		switch {
		case want.GPU > total.GPU:
			return placeErr(ErrInfeasible, "asked %s, %s %d (%s)", text.Plural(want.GPU, "GPU"), clusterNoun(x.nodes), total.GPU, req)
		case want.CPU > total.CPU+1e-9:
			return placeErr(ErrInfeasible, "asked %s, %s %g (%s)", cpuNoun(want.CPU), clusterNoun(x.nodes), total.CPU, req)
		case want.MemoryBytes > total.MemoryBytes:
			return placeErr(ErrInfeasible, "asked %s of memory, %s %s (%s)", text.Bytes(want.MemoryBytes), clusterNoun(x.nodes), text.Bytes(total.MemoryBytes), req)
		case !want.Custom.fits(total.Custom):
			name, w, h, _ := want.Custom.short(total.Custom)
			return placeErr(ErrInfeasible, "asked %g of custom resource %q, %s %g (%s); a node offers it with --resources (rtrain start; this machine's embedded node: rtrain fit)", w, name, clusterNoun(x.nodes), h, req)
		case f.total < req.Count:
			return placeErr(ErrInfeasible, "asked %s; at most %d fit on the %d nodes, the largest node holds %d", req, f.total, x.nodes, f.most)
		}
	}
	return nil
}

// wouldWait says what is free, for a request that does not fit now. It
// looks at every node: it is for messages, not for the hot path.
func (x *index) wouldWait(req Request) error {
	var f fit
	var free Resources
	x.each(func(s *slot) bool {
		f.add(1, x.capacity(s, req.Bundle))
		free = free.Add(s.Free)
		return true
	})
	return placeErr(ErrWouldWait, "asked %s; free now %s, room for %s on %s, at most %d on one",
		req, free, text.Plural(f.total, "bundle"), text.Plural(f.nodes, "node"), f.most)
}
