package sched

import (
	"errors"
	"fmt"
	"slices"
)

// ErrNotAdoptable is wrapped by Adopt's error for a plan the nodes as they
// are now cannot hold: a node missing, or its resources or GPUs taken.
var ErrNotAdoptable = errors.New("cluster: placement cannot be adopted")

// Adopt makes job hold exactly plan, a placement made before (by a head
// that restarted, or another head): its workers already run there, so the
// scheduler takes their resources as they are instead of placing the
// request anew. Every node of the plan must be registered with room for
// its bundles and, for GPU bundles, the plan's GPUs free. It never queues.
func (h *Scheduler) Adopt(job string, req Request, plan Plan) error {
	if len(plan.Assignments) != req.Count {
		return fmt.Errorf("%w: job %s: the plan has %d bundles, the request %d", ErrNotAdoptable, job, len(plan.Assignments), req.Count)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.reserved[job]; dup || h.queued[job] != nil {
		return fmt.Errorf("cluster: job %s already holds or waits for a reservation", job)
	}
	var picks []pick
	var gpus []int
	for _, a := range plan.Assignments {
		s := h.byID[a.NodeID]
		if s == nil || s.removed {
			return fmt.Errorf("%w: job %s: node %s is not in the cluster", ErrNotAdoptable, job, a.NodeID)
		}
		if n := len(picks); n > 0 && picks[n-1].s == s {
			picks[n-1].k++
		} else {
			if slices.ContainsFunc(picks, func(p pick) bool { return p.s == s }) {
				return fmt.Errorf("%w: job %s: the bundles on node %s are not contiguous", ErrNotAdoptable, job, a.NodeID)
			}
			picks = append(picks, pick{s, 1})
		}
		if len(a.GPUs) != max(req.Bundle.GPU, 0) {
			return fmt.Errorf("%w: job %s: a bundle on node %s holds %d GPUs, the request %d", ErrNotAdoptable, job, a.NodeID, len(a.GPUs), req.Bundle.GPU)
		}
		gpus = append(gpus, a.GPUs...)
	}
	for _, p := range picks {
		if capacity(p.s.Free, req.Bundle) < p.k {
			return fmt.Errorf("%w: job %s: node %s has no room for %d bundles", ErrNotAdoptable, job, p.s.ID, p.k)
		}
	}
	rest := map[*slot][]int{}
	for _, p := range picks {
		rest[p.s] = slices.Clone(p.s.FreeGPUs)
	}
	for _, a := range plan.Assignments {
		s := h.byID[a.NodeID]
		for _, g := range a.GPUs {
			i := slices.Index(rest[s], g)
			if i < 0 {
				return fmt.Errorf("%w: job %s: GPU %d of node %s is not free", ErrNotAdoptable, job, g, a.NodeID)
			}
			rest[s] = slices.Delete(rest[s], i, i+1)
		}
	}
	for _, p := range picks {
		s := p.s
		s.Free.add(req.Bundle, -p.k)
		tidy(&s.Free, s.Total)
		s.FreeGPUs = rest[s]
		h.idx.moved(s)
	}
	h.seq++
	h.reserved[job] = &reservation{req: req, picks: picks, gpus: gpus, seq: h.seq}
	return nil
}
