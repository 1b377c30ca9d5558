package agent

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/testutil"
)

// An agent starting on a data directory that a crashed agent left sweeps
// every job's staged checkpoints, and only those: logs stay.
func TestSweepStaged(t *testing.T) {
	dataDir := testutil.WriteFiles(t, map[string]string{
		"jobs/a1/staging/report_2/model.pt":   "gigabytes",
		"jobs/a1/logs/rank_0.log":             "kept",
		"jobs/b2/staging/report_7/.staging-9": "half a file",
		"jobs/c3/workdir/train.py":            "kept",
	})
	removed, err := sweepStaged(dataDir)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{
		filepath.Join(dataDir, "jobs", "a1", "staging"),
		filepath.Join(dataDir, "jobs", "b2", "staging"),
	}, removed)
	for _, gone := range removed {
		assert.NoDirExists(t, gone)
	}
	assert.FileExists(t, filepath.Join(dataDir, "jobs", "a1", "logs", "rank_0.log"))
	assert.FileExists(t, filepath.Join(dataDir, "jobs", "c3", "workdir", "train.py"))

	// A fresh data directory has nothing to sweep.
	removed, err = sweepStaged(t.TempDir())
	require.NoError(t, err)
	assert.Empty(t, removed)
}
