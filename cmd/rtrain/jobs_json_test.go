package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/trainer"
)

// `rtrain jobs -o json` says which jobs the scheduler holds, and why, in
// fields of their own.
func TestJobsJSONHasQueuedAndReason(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, writeJSON(&buf, jobsJSON([]trainer.JobSummary{
		{ID: "a", State: trainer.StatePending, Message: "waiting for resources: asked 8 GPUs", Queued: true, Reason: "asked 8 GPUs"},
		{ID: "b", State: trainer.StateRunning},
	})))
	var got []map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	require.Len(t, got, 2)
	assert.Equal(t, true, got[0]["queued"])
	assert.Equal(t, "asked 8 GPUs", got[0]["reason"])
	assert.NotContains(t, got[1], "queued")
	assert.NotContains(t, got[1], "reason")
}
