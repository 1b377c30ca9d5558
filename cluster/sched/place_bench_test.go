package sched

import (
	"fmt"
	"testing"
)

// BenchmarkPlace places a 64-GPU gang on a snapshot of 10,000 idle 8-GPU
// nodes: the pure function, which builds its indexes from the snapshot
// each call. Scheduler keeps them instead (BenchmarkHeadReserve).
func BenchmarkPlace(b *testing.B) {
	nodes := make([]NodeState, 10_000)
	for i := range nodes {
		nodes[i] = node(fmt.Sprintf("n%d", i), 64, 8)
	}
	for _, st := range []Strategy{Pack, Spread, StrictPack, StrictSpread} {
		req := Request{Count: 64, Bundle: Resources{CPU: 4, GPU: 1}, Strategy: st}
		if st == StrictPack {
			req.Count = 8
		}
		b.Run(st.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := Place(nodes, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
