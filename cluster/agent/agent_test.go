package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/rendezvous"
)

// Start returns before anyone reads the group's events, however many
// workers it starts and however much they print at once: it used to send
// every WorkerStarted itself and deadlocked past the channel's 256 slots.
// Each rank's start still comes before its own events.
func TestStartDoesNotWaitForTheReader(t *testing.T) {
	const n = 400
	spec := cluster.GroupSpec{
		JobID: "many", RunName: "many", Python: "/bin/sh", Script: "-c",
		Args:   []string{"echo one; echo two >&2"},
		Layout: rendezvous.Layout{RunID: "many", MasterAddr: "127.0.0.1", MasterPort: 1, LocalWorldSizes: []int{n}},
		LogDir: t.TempDir(), Grace: time.Second,
	}
	for i := range n {
		spec.Workers = append(spec.Workers, cluster.WorkerSpec{LocalRank: i})
	}
	agent := New(sched.Node{ID: "n1", Addr: "127.0.0.1"}, t.TempDir(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	started := make(chan *Group, 1)
	go func() {
		g, err := agent.Start(ctx, spec)
		assert.NoError(t, err)
		started <- g
	}()
	var g *Group
	select {
	case g = <-started:
	case <-ctx.Done():
		t.Fatal("Start did not return: it waits for a reader of its events")
	}
	require.NotNil(t, g)
	seen := map[int]bool{}
	exited := 0
	for e := range g.Events() {
		switch e.Kind {
		case cluster.WorkerStarted:
			seen[e.Rank] = true
		case cluster.WorkerLog, cluster.WorkerExited:
			assert.True(t, seen[e.Rank], "rank %d: %v before its start", e.Rank, e.Kind)
			if e.Kind == cluster.WorkerExited {
				exited++
				assert.True(t, e.Exit.Success(), "rank %d: %s", e.Rank, e.Exit)
			}
		}
	}
	assert.Len(t, seen, n)
	assert.Equal(t, n, exited)
}
