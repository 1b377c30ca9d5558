package sched

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newHead(t testing.TB, nodes ...NodeState) *Scheduler {
	t.Helper()
	h := New()
	for _, n := range nodes {
		require.NoError(t, h.AddNode(n.Node))
	}
	return h
}

// reserveAsync runs Reserve in a goroutine; its result comes on the channel.
type result struct {
	plan Plan
	err  error
}

func reserveAsync(ctx context.Context, h *Scheduler, job string, req Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		p, err := h.Reserve(ctx, job, req)
		ch <- result{p, err}
	}()
	return ch
}

// waitQueued waits until jobs are the queue, in order.
func waitQueued(t *testing.T, h *Scheduler, jobs ...string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var got []string
		for _, p := range h.Pending() {
			got = append(got, p.Job)
		}
		assert.Equal(c, jobs, got)
	}, 5*time.Second, time.Millisecond)
}

func recv(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("reservation not answered")
		return result{}
	}
}

func requireWaiting(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("reservation answered (%v, %v), want it to wait", r.plan, r.err)
	default:
	}
}

var gpu1 = Resources{CPU: 1, GPU: 1}

func TestHeadReservesAllOrNothing(t *testing.T) {
	h := newHead(t, node("a", 4, 2))
	_, err := h.Reserve(t.Context(), "j1", Request{Count: 2, Bundle: Resources{GPU: 1}})
	require.NoError(t, err)
	// Both GPUs are held: a second job waits and takes nothing.
	j2 := reserveAsync(t.Context(), h, "j2", Request{Count: 1, Bundle: gpu1})
	waitQueued(t, h, "j2")
	requireWaiting(t, j2)
	free := h.Nodes()[0].Free
	require.Equal(t, Resources{CPU: 4, GPU: 0, MemoryBytes: 64 << 30}, free, "free while j2 waits")
	p := h.Pending()[0]
	require.Equal(t, 0, p.Position)
	require.Equal(t, "asked 1 × {CPU: 1, GPU: 1} with PACK; free now {CPU: 4, memory: 64.0GiB}, room for 0 bundles on 0 nodes, at most 0 on one", p.Reason)

	h.Release("j1")
	h.Release("j1") // twice is harmless
	r := recv(t, j2)
	require.NoError(t, r.err)
	require.Equal(t, []Assignment{{NodeID: "a", GPUs: []int{0}}}, r.plan.Assignments)
	n := h.Nodes()[0]
	require.Equal(t, []int{1}, n.FreeGPUs)
	require.Equal(t, Resources{CPU: 3, GPU: 1, MemoryBytes: 64 << 30}, n.Free)
	require.Empty(t, h.Pending())
	require.Equal(t, []Reservation{{Job: "j2", Request: Request{Count: 1, Bundle: gpu1}, Plan: r.plan}}, h.Reservations())
	checkHead(t, h)
}

func TestHeadRefusesATwiceReservedJob(t *testing.T) {
	h := newHead(t, node("a", 4, 2))
	_, err := h.Reserve(t.Context(), "j", Request{Count: 1})
	require.NoError(t, err)
	_, err = h.Reserve(t.Context(), "j", Request{Count: 1})
	require.ErrorContains(t, err, "job j already holds or waits for a reservation")
	require.Error(t, h.AddNode(node("a", 1, 0).Node), "same id twice")
	bad := node("b", 1, 2).Node
	bad.GPUs[1].Index = 0
	require.ErrorContains(t, h.AddNode(bad), "lists a GPU index twice")
}

func TestHeadInfeasibleFailsAtOnce(t *testing.T) {
	tests := map[string]struct {
		req  Request
		want string
	}{
		"pack":          {Request{Count: 9, Bundle: gpu1}, "asked 9 GPUs, the 2 nodes have 8"},
		"spread":        {Request{Count: 9, Bundle: gpu1, Strategy: Spread}, "asked 9 GPUs, the 2 nodes have 8"},
		"strict pack":   {Request{Count: 5, Bundle: gpu1, Strategy: StrictPack}, "the largest node holds 4"},
		"strict spread": {Request{Count: 3, Bundle: gpu1, Strategy: StrictSpread}, "only 2 of the 2 nodes can hold one"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHead(t, node("a", 16, 4), node("b", 16, 4))
			// Even with everything held, an infeasible request does not queue.
			_, err := h.Reserve(t.Context(), "hog", Request{Count: 8, Bundle: gpu1})
			require.NoError(t, err)
			_, err = h.Reserve(t.Context(), "j", tt.req)
			require.ErrorIs(t, err, ErrInfeasible)
			require.ErrorContains(t, err, tt.want)
			require.Empty(t, h.Pending())
		})
	}
}

func TestHeadWaitsPerStrategy(t *testing.T) {
	// Each request fits the idle cluster, not the 3 GPUs free on one node.
	tests := map[string]Request{
		"pack":          {Count: 4, Bundle: gpu1},
		"spread":        {Count: 4, Bundle: gpu1, Strategy: Spread},
		"strict pack":   {Count: 4, Bundle: gpu1, Strategy: StrictPack},
		"strict spread": {Count: 2, Bundle: gpu1, Strategy: StrictSpread},
	}
	for name, req := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHead(t, node("x", 16, 4), node("y", 16, 4), node("z", 16, 4))
			for _, hold := range []struct {
				job string
				n   int
			}{{"c", 4}, {"b", 3}, {"a", 1}, {"d", 1}} {
				_, err := h.Reserve(t.Context(), hold.job, Request{Count: hold.n, Bundle: gpu1, Strategy: StrictPack})
				require.NoError(t, err)
			}
			ch := reserveAsync(t.Context(), h, "j", req)
			waitQueued(t, h, "j")
			require.Contains(t, h.Pending()[0].Reason, "room for 3 bundles on 1 node, at most 3 on one")
			h.Release("c")
			r := recv(t, ch)
			require.NoError(t, r.err)
			checkShape(t, req, r.plan)
			checkHead(t, h)
		})
	}
}

func TestHeadSaysWhyARequestIsQueuedAsItJoins(t *testing.T) {
	h := newHead(t, node("a", 16, 4))
	var reasons []string
	queued := func(r string) { reasons = append(reasons, r) }
	_, err := h.ReserveOrQueue(t.Context(), "placed", Request{Count: 3, Bundle: gpu1}, queued)
	require.NoError(t, err)
	_, err = h.ReserveOrQueue(t.Context(), "never", Request{Count: 5, Bundle: gpu1}, queued)
	require.ErrorIs(t, err, ErrInfeasible)
	require.Empty(t, reasons, "placed at once or failed: never queued")

	ctx, cancel := context.WithCancel(t.Context())
	_, err = h.ReserveOrQueue(ctx, "waits", Request{Count: 2, Bundle: gpu1}, func(r string) {
		reasons = append(reasons, r)
		cancel() // called once the request is in the queue, before Reserve returns
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, reasons, 1)
	assert.Contains(t, reasons[0], "asked 2 × {CPU: 1, GPU: 1} with PACK; free now")
	assert.Empty(t, h.Pending(), "a cancelled request leaves the queue")
}

func TestHeadQueueIsFIFO(t *testing.T) {
	h := newHead(t, node("a", 16, 4))
	_, err := h.Reserve(t.Context(), "hog", Request{Count: 4, Bundle: gpu1})
	require.NoError(t, err)
	big := reserveAsync(t.Context(), h, "big", Request{Count: 4, Bundle: gpu1})
	waitQueued(t, h, "big")
	small := reserveAsync(t.Context(), h, "small", Request{Count: 1, Bundle: gpu1})
	waitQueued(t, h, "big", "small")
	cpu := reserveAsync(t.Context(), h, "cpu", Request{Count: 1, Bundle: Resources{CPU: 1}})
	waitQueued(t, h, "big", "small", "cpu")
	// cpu fits now, but waits its turn.
	require.Equal(t, "fits now but waits its turn behind big, small", h.Pending()[2].Reason)
	requireWaiting(t, cpu)

	h.Release("hog")
	require.NoError(t, recv(t, big).err)
	waitQueued(t, h, "small", "cpu")
	requireWaiting(t, small)
	h.Release("big")
	require.NoError(t, recv(t, small).err)
	require.NoError(t, recv(t, cpu).err)
	var jobs []string
	for _, r := range h.Reservations() {
		jobs = append(jobs, r.Job)
	}
	require.Equal(t, []string{"small", "cpu"}, jobs, "reservations oldest first")
}

// TestHeadBigGangIsNotStarved keeps small jobs coming and going; the big
// gang at the front of the queue still runs.
func TestHeadBigGangIsNotStarved(t *testing.T) {
	h := newHead(t, node("a", 64, 8), node("b", 64, 8))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				job := fmt.Sprintf("small-%d-%d", w, i)
				if _, err := h.Reserve(ctx, job, Request{Count: 3, Bundle: gpu1}); err != nil {
					return
				}
				runtime.Gosched() // the job runs a little
				h.Release(job)
			}
		})
	}
	_, err := h.Reserve(t.Context(), "big", Request{Count: 16, Bundle: gpu1, Strategy: Spread})
	require.NoError(t, err)
	cancel()
	wg.Wait()
	require.Empty(t, h.Pending())
	h.Release("big")
	checkIdle(t, h)
}

func TestHeadCancelLeavesTheQueue(t *testing.T) {
	h := newHead(t, node("a", 16, 4))
	_, err := h.Reserve(t.Context(), "hog", Request{Count: 3, Bundle: gpu1})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	big := reserveAsync(ctx, h, "big", Request{Count: 4, Bundle: gpu1})
	waitQueued(t, h, "big")
	small := reserveAsync(t.Context(), h, "small", Request{Count: 1, Bundle: gpu1})
	waitQueued(t, h, "big", "small")
	cancel()
	r := recv(t, big)
	require.ErrorIs(t, r.err, context.Canceled)
	require.ErrorContains(t, r.err, "cluster: reserve for job big, waiting since")
	// With big gone, small is at the front and fits.
	require.NoError(t, recv(t, small).err)
	require.Empty(t, h.Pending())
	h.Release("hog")
	h.Release("small")
	checkIdle(t, h)

	_, err = h.Reserve(ctx, "late", Request{Count: 1})
	require.ErrorIs(t, err, context.Canceled, "an ended ctx")
}

func TestHeadRemoveNode(t *testing.T) {
	h := newHead(t, node("a", 16, 4), node("b", 16, 4))
	_, err := h.Reserve(t.Context(), "both", Request{Count: 2, Bundle: gpu1, Strategy: StrictSpread})
	require.NoError(t, err)
	_, err = h.Reserve(t.Context(), "on-b", Request{Count: 3, Bundle: gpu1, Strategy: StrictPack})
	require.NoError(t, err)
	nodeOf := func(job string) string {
		for _, r := range h.Reservations() {
			if r.Job == job {
				return r.Plan.Assignments[0].NodeID
			}
		}
		return ""
	}
	packed := nodeOf("on-b")
	// Needs both nodes, whose CPUs are not all free: infeasible once one
	// is gone.
	spread := reserveAsync(t.Context(), h, "spread", Request{Count: 2, Bundle: Resources{CPU: 13}, Strategy: StrictSpread})
	waitQueued(t, h, "spread")
	// Fits the node that stays, once it is free.
	pack := reserveAsync(t.Context(), h, "pack", Request{Count: 4, Bundle: gpu1, Strategy: StrictPack})
	waitQueued(t, h, "spread", "pack")

	require.Equal(t, []string{"both", "on-b"}, h.RemoveNode(packed))
	require.Nil(t, h.RemoveNode(packed), "removed twice")
	r := recv(t, spread)
	require.ErrorIs(t, r.err, ErrInfeasible)
	require.ErrorContains(t, r.err, "with STRICT_SPREAD; this node is the only one")
	waitQueued(t, h, "pack")
	require.Len(t, h.Nodes(), 1)

	// The node comes back under the same name before the jobs end: their
	// release must not give it what they took from its old self.
	require.NoError(t, h.AddNode(node(packed, 16, 4).Node))
	r = recv(t, pack)
	require.NoError(t, r.err)
	require.Equal(t, packed, r.plan.Assignments[0].NodeID, "the node that came back")
	h.Release("on-b")
	h.Release("both")
	checkHead(t, h)
	h.Release("pack")
	checkIdle(t, h)
}

// TestHeadConcurrentReservations hammers the head from many goroutines:
// no partial reservation, no GPU handed to two jobs, free and reserved add
// up to the total throughout.
func TestHeadConcurrentReservations(t *testing.T) {
	var nodes []NodeState
	for i := range 6 {
		nodes = append(nodes, node(fmt.Sprintf("n%d", i), 16, 4))
	}
	h := newHead(t, nodes...)
	var (
		mu   sync.Mutex
		held = map[[2]any]string{} // (node, gpu) → job
	)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(1, uint64(w)))
			for i := range 150 {
				job := fmt.Sprintf("w%d-%d", w, i)
				req := Request{Count: 1 + rng.IntN(6), Bundle: Resources{CPU: float64(rng.IntN(4)) + 0.5, GPU: rng.IntN(2)}, Strategy: Strategy(rng.IntN(4))}
				ctx, cancel := context.WithTimeout(t.Context(), time.Duration(rng.IntN(2000))*time.Microsecond)
				plan, err := h.Reserve(ctx, job, req)
				cancel()
				if err != nil {
					if !errors.Is(err, ErrInfeasible) && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("reserve %s: %v", job, err)
					}
					continue
				}
				if len(plan.Assignments) != req.Count {
					t.Errorf("%s: %d bundles placed, want %d", job, len(plan.Assignments), req.Count)
				}
				mu.Lock()
				for _, a := range plan.Assignments {
					for _, g := range a.GPUs {
						k := [2]any{a.NodeID, g}
						if other, ok := held[k]; ok {
							t.Errorf("GPU %d of %s handed to %s and %s", g, a.NodeID, other, job)
						}
						held[k] = job
					}
				}
				mu.Unlock()
				if rng.IntN(8) == 0 {
					checkHead(t, h)
				}
				mu.Lock()
				for _, a := range plan.Assignments {
					for _, g := range a.GPUs {
						delete(held, [2]any{a.NodeID, g})
					}
				}
				mu.Unlock()
				h.Release(job)
			}
		})
	}
	wg.Wait()
	checkIdle(t, h)
}

// TestHeadRandomOperations runs random reservations, releases and node
// changes one at a time, checking the head's books after each.
func TestHeadRandomOperations(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 2))
			h := New()
			type waiting struct {
				job    string
				ch     <-chan result
				cancel context.CancelFunc
			}
			var live []string
			var queued []waiting
			// answered collects what the queue has answered since.
			answered := func() {
				h.mu.Lock()
				still := map[string]bool{}
				for job := range h.queued {
					still[job] = true
				}
				h.mu.Unlock()
				queued = slices.DeleteFunc(queued, func(w waiting) bool {
					if still[w.job] {
						return false
					}
					r := recv(t, w.ch)
					w.cancel()
					if r.err == nil {
						live = append(live, w.job)
					} else {
						require.ErrorIs(t, r.err, ErrInfeasible, w.job)
					}
					return true
				})
			}
			for i := range 300 {
				switch op := rng.IntN(12); {
				case op == 0 || len(h.Nodes()) == 0:
					require.NoError(t, h.AddNode(randomNode(rng, fmt.Sprintf("n%d", i)).Node))
				case op == 1:
					nodes := h.Nodes()
					h.RemoveNode(nodes[rng.IntN(len(nodes))].ID)
				case op == 2 && len(queued) > 0:
					w := queued[rng.IntN(len(queued))]
					w.cancel()
					if r := recv(t, w.ch); r.err == nil {
						t.Fatalf("%s: placed after its ctx ended", w.job)
					}
					queued = slices.DeleteFunc(queued, func(o waiting) bool { return o.job == w.job })
				case op < 6 && len(live) > 0:
					k := rng.IntN(len(live))
					h.Release(live[k])
					live = slices.Delete(live, k, k+1)
				default:
					job := fmt.Sprintf("j%d", i)
					req := randomRequest(rng)
					before := h.Nodes()
					ctx, cancel := context.WithCancel(t.Context())
					ch := reserveAsync(ctx, h, job, req)
					var got *result
					require.Eventually(t, func() bool {
						select {
						case r := <-ch:
							got = &r
							return true
						default:
						}
						h.mu.Lock()
						defer h.mu.Unlock()
						return h.queued[job] != nil
					}, 5*time.Second, 20*time.Microsecond)
					switch {
					case got == nil:
						queued = append(queued, waiting{job, ch, cancel})
					case got.err == nil:
						cancel()
						live = append(live, job)
						if len(queued) == 0 {
							checkPlan(t, before, req, got.plan)
						}
					default:
						cancel()
						require.ErrorIs(t, got.err, ErrInfeasible)
					}
				}
				answered()
				checkHead(t, h)
			}
			for _, w := range queued {
				w.cancel()
				// Placed before the cancel reached it: it holds what it got.
				if r := recv(t, w.ch); r.err == nil {
					live = append(live, w.job)
				}
			}
			for _, job := range live {
				h.Release(job)
			}
			checkIdle(t, h)
		})
	}
}
