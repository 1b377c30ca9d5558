package dashboard_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rtrain/rtrain/trainer"
)

// The scheduler's queue is counted by the summaries' queued field, not by
// what their messages say.
func TestPendingJobsAreThoseQueued(t *testing.T) {
	status := trainer.ClusterStatus{Jobs: []trainer.JobSummary{
		{ID: "q", State: trainer.StatePending, Message: "waiting for resources: needs 8 GPUs, the cluster has 4", Queued: true, Reason: "needs 8 GPUs, the cluster has 4"},
		{ID: "nodes", State: trainer.StatePending, Message: "waiting for nodes to join: asked 8 GPUs, the cluster has 4"},
		{ID: "lookalike", State: trainer.StatePending, Message: "waiting for resources: says so, but the scheduler does not hold it"},
	}}
	src := fakeSource{
		status: func() trainer.ClusterStatus { return status },
		jobEvents: func(string, int, int) ([]trainer.Event, int, *trainer.Result, <-chan struct{}, bool) {
			return nil, 0, nil, nil, false
		},
	}
	srv := serve(t, src)
	got := scrape(t, func(path string) (*http.Response, string) { return get(t, srv, path, token) })
	assert.Equal(t, 1.0, got["rtrain_scheduler_pending_jobs"])
	assert.Equal(t, 3.0, got["rtrain_jobs{state=PENDING}"])
}
