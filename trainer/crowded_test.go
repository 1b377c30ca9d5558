package trainer

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rtrain/rtrain/cluster/sched"
)

func TestCrowded(t *testing.T) {
	nodes := []sched.NodeState{
		{Node: sched.Node{ID: "a", Total: sched.Resources{CPU: 2}}},
		{Node: sched.Node{ID: "b", Total: sched.Resources{CPU: 0.5}}},
	}
	on := func(counts map[string]int) sched.Plan {
		var p sched.Plan
		for _, id := range []string{"a", "b"} {
			for range counts[id] {
				p.Assignments = append(p.Assignments, sched.Assignment{NodeID: id})
			}
		}
		return p
	}
	tests := map[string]struct {
		plan    sched.Plan
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
			req := sched.Request{Count: len(tt.plan.Assignments), Bundle: sched.Resources{CPU: tt.cpu}}
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
