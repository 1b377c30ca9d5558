package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
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

// --events writes the job as it goes: states, rank 0's reports and the
// checkpoints, one JSON object a line.
func TestFitWritesEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	fit := rtrain(t, "fit", "--workers", "2", "--events", path, "train_rtrain.py")
	fit.cmd.Dir = repo(t, "examples")
	require.Equal(t, exitOK, fit.run(t), fit.stderr.String())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var states []string
	reports, checkpoints := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e struct {
			Type       string         `json:"type"`
			State      string         `json:"state"`
			Metrics    map[string]any `json:"metrics"`
			Checkpoint *struct {
				URI   string `json:"uri"`
				Index int    `json:"index"`
			} `json:"checkpoint"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &e), line)
		switch e.Type {
		case "state":
			states = append(states, e.State)
		case "report":
			reports++
			assert.Contains(t, e.Metrics, "loss")
		case "checkpoint":
			checkpoints++
			require.NotNil(t, e.Checkpoint)
			assert.Equal(t, checkpoints, e.Checkpoint.Index)
		}
	}
	require.NotEmpty(t, states)
	assert.Equal(t, "PENDING", states[0])
	assert.Equal(t, "SUCCEEDED", states[len(states)-1])
	assert.Contains(t, states, "RUNNING")
	assert.Equal(t, 5, reports, "rank 0's reports only")
	assert.Equal(t, 5, checkpoints)
}
