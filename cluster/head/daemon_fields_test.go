package head

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/trainer"
)

// A job the scheduler queues is queued in its summary, with the reason as
// a field of its own, over gRPC as in the head's Status.
func TestQueuedJobsSummaryHasQueuedAndReason(t *testing.T) {
	h := startTestHead(t, Config{})
	sc := h.nodes.Scheduler()
	require.NoError(t, sc.AddNode(sched.Node{ID: "n1", Addr: "127.0.0.1", Total: sched.Resources{CPU: 1}}))
	req := sched.Request{Count: 1, Bundle: sched.Resources{CPU: 1}}
	_, err := sc.Reserve(t.Context(), "running", req)
	require.NoError(t, err)
	addJob(h, "running", trainer.StateRunning)
	addJob(h, "waiting", trainer.StatePending)
	ctx, cancel := context.WithCancel(t.Context())
	queued, done := make(chan string, 1), make(chan struct{})
	go func() {
		defer close(done)
		_, _ = sc.ReserveOrQueue(ctx, "waiting", req, func(reason string) { queued <- reason })
	}()
	t.Cleanup(func() { cancel(); <-done })
	var reason string
	select {
	case reason = <-queued:
	case <-time.After(10 * time.Second):
		t.Fatal("the request was not queued")
	}
	require.NotEmpty(t, reason)

	c, err := trainer.Dial(h.Addr().String(), h.cfg.Security)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	jobs, err := c.Jobs(t.Context())
	require.NoError(t, err)
	for name, jobs := range map[string][]trainer.JobSummary{"over gRPC": jobs, "Status": h.Status().Jobs} {
		byID := map[string]trainer.JobSummary{}
		for _, s := range jobs {
			byID[s.ID] = s
		}
		require.Contains(t, byID, "waiting", name)
		assert.True(t, byID["waiting"].Queued, name)
		assert.Equal(t, reason, byID["waiting"].Reason, name)
		assert.Equal(t, "waiting for resources: "+reason, byID["waiting"].Message, "%s: and says so to people", name)
		assert.False(t, byID["running"].Queued, name)
		assert.Empty(t, byID["running"].Reason, name)
	}
}

// The head keeps each event's kind as a field, the notices it writes and
// the end of a job it restores included; a log line is told by its kind.
func TestStoredEventsKeepTheirKind(t *testing.T) {
	hj := &headJob{changed: make(chan struct{}), logDir: "/results/run/logs"}
	types := []trainer.EventType{trainer.EventState, trainer.EventWorkerStarted, trainer.EventLog, trainer.EventReport, trainer.EventWorkerExited, trainer.EventCheckpoint, trainer.EventWarning, trainer.EventRestart}
	for _, typ := range types {
		hj.add(jobEvent(trainer.Event{Type: typ, Line: `{"Type":"log"`}), "", "")
	}
	for i, ev := range hj.eventsFrom(0) {
		assert.Equal(t, string(types[i]), ev.Kind)
		assert.Equal(t, types[i] == trainer.EventLog, isLog(ev), "isLog of a %s event", types[i])
	}
	hj.mu.Lock()
	hj.trimLogs(0)
	hj.mu.Unlock()
	all := hj.eventsFrom(0)
	require.Len(t, all, len(types), "the line went, a notice stands for it")
	assert.Equal(t, string(trainer.EventWarning), all[2].Kind, "the notice")

	r := restored(jobRecord{ID: "j", Name: "run", State: trainer.StateLost, Ended: time.Now()})
	require.Len(t, r.events, 1)
	assert.Equal(t, string(trainer.EventState), r.events[0].Kind)
}
