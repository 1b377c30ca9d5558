package cluster

import (
	"fmt"
	"testing"
)

// BenchmarkPlace places a 64-GPU gang on a 1,000-node cluster of 8-GPU nodes.
func BenchmarkPlace(b *testing.B) {
	nodes := make([]NodeState, 1000)
	for i := range nodes {
		nodes[i] = node(fmt.Sprintf("n%d", i), 64, 8)
	}
	req := Request{Count: 64, Bundle: Resources{CPU: 4, GPU: 1}}
	for b.Loop() {
		if _, err := Place(nodes, req); err != nil {
			b.Fatal(err)
		}
	}
}
