package trainer_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/trainer"
)

// checkOrder asserts what the event stream promises whatever the job did:
// the first event is PENDING, the last is the final state and the only
// final one; each rank starts before anything else of it; checkpoints come
// in index order, each after the reports that made it.
func checkOrder(t *testing.T, events []trainer.Event, world int) {
	t.Helper()
	require.NotEmpty(t, events)
	first, last := events[0], events[len(events)-1]
	assert.Equal(t, trainer.EventState, first.Type)
	assert.Equal(t, trainer.StatePending, first.State)
	require.Equal(t, trainer.EventState, last.Type)
	assert.True(t, last.State.Done(), "last event is a final state, got %s", last.State)

	started := map[int]bool{}
	exited := map[int]bool{}
	reports := 0
	lastIndex := 0
	for i, e := range events {
		if e.Type == trainer.EventState && e.State.Done() {
			assert.Equal(t, len(events)-1, i, "a final state before the end")
		}
		switch e.Type {
		case trainer.EventWorkerStarted:
			assert.False(t, started[e.Rank], "rank %d started twice", e.Rank)
			started[e.Rank] = true
		case trainer.EventLog, trainer.EventReport:
			assert.True(t, started[e.Rank], "rank %d: %s before it started", e.Rank, e.Type)
			assert.False(t, exited[e.Rank], "rank %d: %s after it exited", e.Rank, e.Type)
			if e.Type == trainer.EventReport {
				reports++
			}
		case trainer.EventWorkerExited:
			assert.True(t, started[e.Rank], "rank %d exited before it started", e.Rank)
			exited[e.Rank] = true
		case trainer.EventCheckpoint:
			assert.Greater(t, e.Checkpoint.Index, lastIndex, "checkpoints out of order")
			lastIndex = e.Checkpoint.Index
			assert.GreaterOrEqual(t, reports, world*(e.Checkpoint.Index), "checkpoint %d before every rank reported it", e.Checkpoint.Index)
		}
	}
	if len(started) > 0 {
		assert.Len(t, exited, len(started), "every started rank exits before the end")
	}
}

func TestEventOrderOfASuccessfulJob(t *testing.T) {
	j := newJob(t, example(t, "train_rtrain.py"), 2, "--epochs", "3")
	_, err := j.fit(t, t.Context())
	require.NoError(t, err)
	checkOrder(t, j.events, 2)
	assert.Equal(t, []trainer.State{trainer.StatePending, trainer.StateStarting, trainer.StateRunning, trainer.StateSucceeded}, j.states())
	assert.Len(t, j.ofType(trainer.EventCheckpoint), 3)
	assert.Len(t, j.ofType(trainer.EventWorkerExited), 2)
}

func TestEventOrderOfAFailingJob(t *testing.T) {
	j := newJob(t, "testdata/fail_rank.py", 3)
	j.Env = append(j.Env, "FAIL_RANK=1")
	res, err := j.fit(t, t.Context())
	require.Error(t, err)
	checkOrder(t, j.events, 3)
	assert.Equal(t, trainer.StateFailed, res.State)
	states := j.states()
	assert.Equal(t, trainer.StateFailed, states[len(states)-1])
	require.Len(t, j.ofType(trainer.EventWorkerExited), 3)
	// A peer that dies of the failed rank's closed connections can be
	// seen to exit first on a loaded machine; the root cause is still the
	// rank that raised.
	var jerr *trainer.JobError
	require.ErrorAs(t, err, &jerr)
	assert.Equal(t, 1, jerr.Cause.Rank, "root cause: %v", jerr)
}

// Cancelling in the middle of checkpoint uploads stops every process
// (newJob's cleanup checks the process table) and commits nothing partial:
// every listed checkpoint is whole, and no staged file is left.
func TestCancelDuringUploadCommitsNothingPartial(t *testing.T) {
	j := newJob(t, "testdata/big_checkpoints.py", 2)
	j.Env = append(j.Env, "SIZE_MB=64", "EPOCHS=20")
	j.Storage = filepath.Join(t.TempDir(), "store")
	j.Name = "cancelled"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// By the first checkpoint's event the next one is staged or uploading.
	j.onFirst(trainer.EventCheckpoint, cancel)
	res, err := j.fit(t, ctx)
	require.ErrorIs(t, err, trainer.ErrCancelled)
	checkOrder(t, j.events, 2)
	assert.Equal(t, trainer.StateCancelled, res.State)

	run := openRun(t, &j.Config, "cancelled")
	ms, err := run.List(t.Context())
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	for _, m := range ms {
		require.NoError(t, run.Download(t.Context(), m, t.TempDir()), "checkpoint %d is whole", m.Index)
	}
	require.NotNil(t, res.Latest)
	assert.Equal(t, ms[len(ms)-1].Index, res.Latest.Index)
	_, err = os.Stat(filepath.Join(j.ResultsDir, ".rtrain-staging"))
	assert.ErrorIs(t, err, os.ErrNotExist, "staged files are deleted")
}
