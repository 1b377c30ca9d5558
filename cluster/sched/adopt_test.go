package sched

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAdoptTakesThePlanAsItIs(t *testing.T) {
	h := newHead(t, node("a", 4, 4), node("b", 4, 4))
	req := Request{Count: 3, Bundle: Resources{CPU: 1, GPU: 1}}
	plan := Plan{Assignments: []Assignment{{"a", []int{2}}, {"a", []int{0}}, {"b", []int{3}}}}
	require.NoError(t, h.Adopt("j1", req, plan))

	rs := h.Reservations()
	require.Len(t, rs, 1)
	assert.Equal(t, plan, rs[0].Plan)
	free := map[string][]int{}
	for _, n := range h.Nodes() {
		free[n.ID] = n.FreeGPUs
	}
	assert.Equal(t, []int{1, 3}, free["a"])
	assert.Equal(t, []int{0, 1, 2}, free["b"])

	// Released like any reservation: every GPU is free again.
	h.Release("j1")
	for _, n := range h.Nodes() {
		assert.Equal(t, []int{0, 1, 2, 3}, n.FreeGPUs, "node %s", n.ID)
		assert.Equal(t, n.Total, n.Free, "node %s", n.ID)
	}
}

func TestAdoptRefusesWhatTheNodesCannotHold(t *testing.T) {
	one := Request{Count: 1, Bundle: Resources{CPU: 1, GPU: 1}}
	tests := map[string]struct {
		req  Request
		plan Plan
	}{
		"missing node":     {one, Plan{Assignments: []Assignment{{"gone", []int{0}}}}},
		"GPU taken":        {one, Plan{Assignments: []Assignment{{"a", []int{0}}}}},
		"no such GPU":      {one, Plan{Assignments: []Assignment{{"a", []int{9}}}}},
		"too many bundles": {Request{Count: 1, Bundle: Resources{CPU: 4}}, Plan{Assignments: []Assignment{{"a", nil}}}},
		"size mismatch":    {Request{Count: 2, Bundle: Resources{CPU: 1}}, Plan{Assignments: []Assignment{{"a", nil}}}},
		"GPU count":        {one, Plan{Assignments: []Assignment{{"a", []int{1, 2}}}}},
		"not contiguous":   {Request{Count: 3, Bundle: Resources{CPU: 0.1}}, Plan{Assignments: []Assignment{{"a", nil}, {"b", nil}, {"a", nil}}}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHead(t, node("a", 4, 4), node("b", 4, 4))
			// Another job holds GPU 0 of a and one core.
			require.NoError(t, h.Adopt("other", one, Plan{Assignments: []Assignment{{"a", []int{0}}}}))
			before := h.Nodes()
			err := h.Adopt("j1", tt.req, tt.plan)
			require.ErrorIs(t, err, ErrNotAdoptable)
			assert.Equal(t, before, h.Nodes(), "a refused adoption takes nothing")
			assert.Len(t, h.Reservations(), 1)
		})
	}
}
