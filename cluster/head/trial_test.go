package head

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/trainer"
)

// A trial's summary has its params, metric and mode, and the best of its
// metric among rank 0's reports; the job table keeps them all, so a head
// that restarts still shows the sweep.
func TestTrialSummaryIsStoredAndRestored(t *testing.T) {
	hj := &headJob{id: "j1", name: "trial-1", group: "sw", params: map[string]string{"lr": "0.1", "model/depth": "4"},
		best: trainer.BestTracker{Metric: "loss", Mode: trainer.ModeMin}, state: trainer.StateRunning,
		submitted: time.Now(), changed: make(chan struct{})}
	s := hj.summary()
	assert.Nil(t, s.Best, "no best before a report")
	assert.Zero(t, s.BestIteration)
	for _, m := range []string{`{"loss": 0.5}`, `{"epoch": 1}`, `{"loss": 0.25, "epoch": 2}`, `{"loss": 0.3}`} {
		var metrics pyshim.Metrics
		require.NoError(t, json.Unmarshal([]byte(m), &metrics))
		hj.reported(trainer.Event{Type: trainer.EventReport, Metrics: metrics})
	}
	check := func(what string, hj *headJob) {
		t.Helper()
		s := hj.summary()
		assert.Equal(t, "sw", s.Group, what)
		assert.Equal(t, map[string]string{"lr": "0.1", "model/depth": "4"}, s.Params, what)
		assert.Equal(t, "loss", s.Metric, what)
		assert.Equal(t, trainer.ModeMin, s.Mode, what)
		if assert.NotNil(t, s.Best, what) {
			assert.Equal(t, 0.25, *s.Best, what)
		}
		assert.Equal(t, int32(3), s.BestIteration, "%s: the third report", what)
	}
	check("running", hj)

	store, err := openJobStore(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.close() })
	require.NoError(t, store.put(hj.record()))
	recs, err := store.recover(time.Now())
	require.NoError(t, err)
	require.Len(t, recs, 1)
	check("restored", restored(recs[0]))

	// A job that never reported its metric has no best, stored or not.
	none := &headJob{id: "j2", best: trainer.BestTracker{Metric: "loss", Mode: trainer.ModeMin}, changed: make(chan struct{})}
	require.NoError(t, store.put(none.record()))
	recs, err = store.recover(time.Now())
	require.NoError(t, err)
	require.Len(t, recs, 2)
	for _, r := range recs {
		if r.ID == "j2" {
			s := restored(r).summary()
			assert.Nil(t, s.Best)
			assert.Zero(t, s.BestIteration)
			assert.Equal(t, "loss", s.Metric)
		}
	}
}
