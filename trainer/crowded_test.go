package trainer

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rtrain/rtrain/cluster"
)

func TestCrowded(t *testing.T) {
	nodes := []cluster.NodeState{
		{Node: cluster.Node{ID: "a", Total: cluster.Resources{CPU: 2}}},
		{Node: cluster.Node{ID: "b", Total: cluster.Resources{CPU: 0.5}}},
	}
	on := func(counts map[string]int) cluster.Plan {
		var p cluster.Plan
		for _, id := range []string{"a", "b"} {
			for range counts[id] {
				p.Assignments = append(p.Assignments, cluster.Assignment{NodeID: id})
			}
		}
		return p
	}
	tests := map[string]struct {
		plan    cluster.Plan
		cpu     float64
		wantErr bool
	}{
		"within the cap":              {on(map[string]int{"a": 128, "b": 64}), 0, false},
		"over on a node":              {on(map[string]int{"a": 129}), 0, true},
		"under a core counts as one":  {on(map[string]int{"b": 65}), 0, true},
		"workers that reserve a core": {on(map[string]int{"a": 1000}), 0.001, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			req := cluster.Request{Count: len(tt.plan.Assignments), Bundle: cluster.Resources{CPU: tt.cpu}}
			err := crowded(nodes, tt.plan, req)
			if !tt.wantErr {
				assert.NoError(t, err)
				return
			}
			assert.True(t, errors.Is(err, ErrInvalidConfig), "err = %v", err)
			assert.Contains(t, err.Error(), "give --cpus-per-worker")
		})
	}
}
