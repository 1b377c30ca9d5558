package sched

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scheduler keeps the cluster's nodes, the reservations of running jobs and the
// queue of placement groups waiting for room. A job holds all of its
// bundles or none.
//
// The queue is strict FIFO: only its first request is tried, and a later
// request waits behind it even when it would fit now. That wastes room a
// small request could use for a while, but a large gang at the front is
// never overtaken by a stream of small ones, so every request that can ever
// fit is placed once enough reservations ahead of it are released.
type Scheduler struct {
	mu       sync.Mutex
	idx      index
	byID     map[string]*slot
	order    []*slot // registration order, for Nodes
	reserved map[string]*reservation
	queue    []*waiter
	queued   map[string]*waiter
	seq      uint64
}

// reservation is what a job holds: picks, and the GPUs they hand out
// bundle by bundle. The plan is built from them outside the lock.
type reservation struct {
	req   Request
	picks []pick
	gpus  []int
	seq   uint64
}

// waiter is a queued Reserve. res or err is set, under Scheduler.mu, before done
// is closed.
type waiter struct {
	job   string
	req   Request
	since time.Time
	done  chan struct{}
	res   *reservation
	err   error
}

// Pending is a queued request, for a status view.
type Pending struct {
	Job     string
	Request Request
	Since   time.Time
	// Position is 0 for the request tried next.
	Position int
	// Reason says why it waits, in one line.
	Reason string
}

// Reservation is what a job holds.
type Reservation struct {
	Job     string
	Request Request
	Plan    Plan
}

// New returns a scheduler with no nodes.
func New() *Scheduler {
	h := &Scheduler{byID: map[string]*slot{}, reserved: map[string]*reservation{}, queued: map[string]*waiter{}}
	h.idx.init()
	return h
}

// AddNode registers a node with all of its resources free, and places what
// waited for it.
func (h *Scheduler) AddNode(n Node) error {
	if n.Total.CPU < 0 || n.Total.MemoryBytes < 0 {
		return fmt.Errorf("cluster: node %s has negative resources %s", n.ID, n.Total)
	}
	free := make([]int, len(n.GPUs))
	for i, g := range n.GPUs {
		free[i] = g.Index
	}
	slices.Sort(free)
	if len(slices.Compact(slices.Clone(free))) != len(free) {
		return fmt.Errorf("cluster: node %s lists a GPU index twice", n.ID)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.byID[n.ID]; dup {
		return fmt.Errorf("cluster: node %s is already registered", n.ID)
	}
	n.GPUs = slices.Clone(n.GPUs)
	s := &slot{NodeState: NodeState{Node: n, Free: n.Total, FreeGPUs: free}}
	h.byID[n.ID] = s
	h.order = append(h.order, s)
	h.idx.add(s)
	h.dispatch()
	return nil
}

// RemoveNode forgets a node, e.g. one declared dead, and returns the jobs
// that hold bundles on it, sorted. Their reservations stay until Release,
// which gives nothing back to the removed node. Queued requests that no
// longer fit the cluster fail with ErrInfeasible. Removing an unknown node
// does nothing.
func (h *Scheduler) RemoveNode(id string) (jobs []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.byID[id]
	if !ok {
		return nil
	}
	delete(h.byID, id)
	h.order = slices.DeleteFunc(h.order, func(o *slot) bool { return o == s })
	h.idx.remove(s)
	for job, r := range h.reserved {
		if slices.ContainsFunc(r.picks, func(p pick) bool { return p.s == s }) {
			jobs = append(jobs, job)
		}
	}
	slices.Sort(jobs)
	kept := h.queue[:0]
	for _, w := range h.queue {
		if err := h.idx.feasible(w.req); err != nil {
			h.resolve(w, nil, err)
			continue
		}
		kept = append(kept, w)
	}
	clear(h.queue[len(kept):])
	h.queue = kept
	h.dispatch()
	return jobs
}

// Nodes returns a snapshot of the nodes, in the order they were added.
func (h *Scheduler) Nodes() []NodeState {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]NodeState, len(h.order))
	for i, s := range h.order {
		out[i] = s.NodeState
		out[i].GPUs = slices.Clone(s.GPUs)
		out[i].FreeGPUs = slices.Clone(s.FreeGPUs)
	}
	return out
}

// Reserve places req for job and takes its resources, all or nothing. When
// they are not free it waits in the queue until they are, until ctx ends
// (it then leaves the queue and returns ctx's error, wrapped), or until the
// request can no longer be placed because nodes were removed
// (ErrInfeasible). A request the current nodes could never hold fails at
// once with ErrInfeasible.
func (h *Scheduler) Reserve(ctx context.Context, job string, req Request) (Plan, error) {
	return h.ReserveOrQueue(ctx, job, req, nil)
}

// ReserveOrQueue is Reserve that calls queued, when not nil, with the
// reason the request waits as soon as it joins the queue; it is not called
// when the request is placed at once or fails.
func (h *Scheduler) ReserveOrQueue(ctx context.Context, job string, req Request, queued func(reason string)) (Plan, error) {
	if err := ctx.Err(); err != nil {
		return Plan{}, fmt.Errorf("cluster: reserve for job %s: %w", job, err)
	}
	h.mu.Lock()
	if _, dup := h.reserved[job]; dup || h.queued[job] != nil {
		h.mu.Unlock()
		return Plan{}, fmt.Errorf("cluster: job %s already holds or waits for a reservation", job)
	}
	if err := h.idx.feasible(req); err != nil {
		h.mu.Unlock()
		return Plan{}, err
	}
	if len(h.queue) == 0 {
		if picks := h.idx.plan(req); picks != nil {
			r := h.commit(job, req, picks)
			h.mu.Unlock()
			return buildPlan(r.picks, req, r.gpus), nil
		}
	}
	w := &waiter{job: job, req: req, since: time.Now(), done: make(chan struct{})}
	h.queue = append(h.queue, w)
	h.queued[job] = w
	reason := ""
	if queued != nil {
		reason = h.reason(len(h.queue) - 1)
	}
	h.mu.Unlock()
	if queued != nil {
		queued(reason)
	}

	select {
	case <-w.done:
		if w.err != nil {
			return Plan{}, w.err
		}
		return buildPlan(w.res.picks, req, w.res.gpus), nil
	case <-ctx.Done():
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-w.done:
		// Placed (or failed) while ctx ended: the caller gets ctx's error,
		// so it must not keep what was placed.
		if w.err == nil {
			h.release(job)
			h.dispatch()
		}
		return Plan{}, fmt.Errorf("cluster: reserve for job %s: %w", job, ctx.Err())
	default:
	}
	pos := slices.Index(h.queue, w)
	reason = h.reason(pos)
	h.queue = slices.Delete(h.queue, pos, pos+1)
	delete(h.queued, job)
	if pos == 0 {
		h.dispatch()
	}
	return Plan{}, fmt.Errorf("cluster: reserve for job %s, waiting since %s (%s): %w",
		job, w.since.Format(time.TimeOnly), reason, ctx.Err())
}

// Release gives back what job holds, and places what waited for it.
// Releasing twice, or a job that holds nothing, is harmless. A job's queued
// request is not touched: it leaves the queue when its Reserve's ctx ends.
func (h *Scheduler) Release(job string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.release(job) {
		h.dispatch()
	}
}

// Pending lists the queued requests, first to be tried first.
func (h *Scheduler) Pending() []Pending {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Pending, len(h.queue))
	for i, w := range h.queue {
		out[i] = Pending{Job: w.job, Request: w.req, Since: w.since, Position: i, Reason: h.reason(i)}
	}
	return out
}

// Reservations lists what jobs hold, oldest first.
func (h *Scheduler) Reservations() []Reservation {
	h.mu.Lock()
	defer h.mu.Unlock()
	rs := make([]*reservation, 0, len(h.reserved))
	jobs := make(map[*reservation]string, len(h.reserved))
	for job, r := range h.reserved {
		rs = append(rs, r)
		jobs[r] = job
	}
	slices.SortFunc(rs, func(a, b *reservation) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]Reservation, len(rs))
	for i, r := range rs {
		out[i] = Reservation{Job: jobs[r], Request: r.req, Plan: buildPlan(r.picks, r.req, r.gpus)}
	}
	return out
}

// reason says why the queued request at pos waits.
func (h *Scheduler) reason(pos int) string {
	w := h.queue[pos]
	if h.idx.plan(w.req) == nil {
		return h.idx.wouldWait(w.req).Error()
	}
	// Only a request behind others can fit and still wait.
	ahead := make([]string, 0, min(pos, 3))
	for _, a := range h.queue[:min(pos, 3)] {
		ahead = append(ahead, a.job)
	}
	more := ""
	if pos > 3 {
		more = fmt.Sprintf(" and %d more", pos-3)
	}
	return fmt.Sprintf("fits now but waits its turn behind %s%s", strings.Join(ahead, ", "), more)
}

// dispatch places queued requests in order until one does not fit.
func (h *Scheduler) dispatch() {
	for len(h.queue) > 0 {
		w := h.queue[0]
		picks := h.idx.plan(w.req)
		if picks == nil {
			return
		}
		h.resolve(w, h.commit(w.job, w.req, picks), nil)
		h.queue[0] = nil
		h.queue = h.queue[1:]
	}
}

// resolve answers a queued request; the caller takes it off the queue.
func (h *Scheduler) resolve(w *waiter, r *reservation, err error) {
	delete(h.queued, w.job)
	w.res, w.err = r, err
	close(w.done)
}

// commit takes picks' resources for job. Only what must happen under the
// lock happens here: the plan is built by the caller, after.
func (h *Scheduler) commit(job string, req Request, picks []pick) *reservation {
	gpus := freeGPUs(picks, req)
	for _, p := range picks {
		s := p.s
		s.Free.add(req.Bundle, -p.k)
		tidy(&s.Free, s.Total)
		if g := p.k * req.Bundle.GPU; g > 0 {
			s.FreeGPUs = append(s.FreeGPUs[:0], s.FreeGPUs[g:]...)
		}
		h.idx.moved(s)
	}
	h.seq++
	r := &reservation{req: req, picks: picks, gpus: gpus, seq: h.seq}
	h.reserved[job] = r
	return r
}

// release gives back job's resources to the nodes that are still there, and
// reports whether job held any.
func (h *Scheduler) release(job string) bool {
	r, ok := h.reserved[job]
	if !ok {
		return false
	}
	delete(h.reserved, job)
	gpus := r.gpus
	for _, p := range r.picks {
		s := p.s
		held := gpus[:p.k*max(r.req.Bundle.GPU, 0)]
		gpus = gpus[len(held):]
		if s.removed {
			continue
		}
		s.Free.add(r.req.Bundle, p.k)
		tidy(&s.Free, s.Total)
		if len(held) > 0 {
			s.FreeGPUs = append(s.FreeGPUs, held...)
			slices.Sort(s.FreeGPUs)
		}
		h.idx.moved(s)
	}
	return true
}

// tidy rounds away the float error that adding and taking fractional CPUs
// leaves near zero and near the total.
func tidy(free *Resources, total Resources) {
	const eps = 1e-9
	if free.CPU > -eps && free.CPU < eps {
		free.CPU = 0
	}
	if d := free.CPU - total.CPU; d > -eps && d < eps {
		free.CPU = total.CPU
	}
}
