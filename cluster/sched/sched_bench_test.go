package sched

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkHeadReserve is the scheduler at cluster scale: 10,000 nodes of
// 64 CPUs and 8 GPUs, 1,000 placement groups alive at once, each of 2–64
// bundles of {CPU: 1..8, GPU: 1} (2–8 for STRICT_PACK, which must fit one
// node). Goroutines each own a share of the groups and replace them one at
// a time: remove one, create another. An op is one remove and one create;
// placements/s counts them, and p50/p99 are the latency of Reserve,
// waiting for the head's lock and in its queue included.
//
// Ray's anchor is about 765 create+remove per second, 1.75 ms a create.
// With g=1000 every group has a goroutine of its own, so each Reserve
// queues behind up to 999 others for the lock.
func BenchmarkHeadReserve(b *testing.B) {
	for _, st := range []Strategy{Pack, Spread, StrictPack, StrictSpread} {
		for _, goroutines := range []int{1, 50, 1000} {
			b.Run(fmt.Sprintf("%s/g=%d", st, goroutines), func(b *testing.B) {
				benchReserve(b, st, goroutines)
			})
		}
	}
}

func benchReserve(b *testing.B, st Strategy, goroutines int) {
	const (
		nodes  = 10_000
		groups = 1_000
	)
	h := New()
	for i := range nodes {
		if err := h.AddNode(node(fmt.Sprintf("n%d", i), 64, 8).Node); err != nil {
			b.Fatal(err)
		}
	}
	maxBundles := 64
	if st == StrictPack {
		maxBundles = 8
	}
	ctx := b.Context()
	request := func(rng *rand.Rand) Request {
		return Request{
			Count:    2 + rng.IntN(maxBundles-1),
			Bundle:   Resources{CPU: float64(1 + rng.IntN(8)), GPU: 1},
			Strategy: st,
		}
	}
	reserve := func(job string, req Request) time.Duration {
		start := time.Now()
		if _, err := h.Reserve(ctx, job, req); err != nil {
			b.Error(err)
		}
		return time.Since(start)
	}
	// The groups alive from the start; goroutine w owns those i%goroutines == w.
	jobs := make([]string, groups)
	rng := rand.New(rand.NewPCG(1, 0))
	for i := range jobs {
		jobs[i] = fmt.Sprintf("g%d-0", i)
		reserve(jobs[i], request(rng))
	}
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, b.N)
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for w := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(2, uint64(w)))
			var mine []time.Duration
			for round := 1; ; round++ {
				for i := w; i < groups; i += goroutines {
					if next.Add(1) > int64(b.N) {
						mu.Lock()
						lat = append(lat, mine...)
						mu.Unlock()
						return
					}
					h.Release(jobs[i])
					jobs[i] = fmt.Sprintf("g%d-%d", i, round)
					mine = append(mine, reserve(jobs[i], request(rng)))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	for _, job := range jobs {
		h.Release(job)
	}
	if len(h.Reservations()) != 0 || len(h.Pending()) != 0 {
		b.Fatal("reservations left behind")
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "placements/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
