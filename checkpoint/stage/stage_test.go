package stage

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/testutil"
)

func TestStagerMergesRanksAndBoundsInFlight(t *testing.T) {
	s, err := New(filepath.Join(t.TempDir(), "staging"), 1)
	require.NoError(t, err)
	ctx := t.Context()

	rank0 := testutil.WriteFiles(t, map[string]string{"model.pt": "weights", "opt/state.pt": "momentum"})
	rank1 := testutil.WriteFiles(t, map[string]string{"shard_1.pt": "shard"})
	dir, files0, err := s.Stage(ctx, 1, rank0)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"model.pt", "opt/state.pt"}, files0, "the files staged, relative to the report's directory")
	dir1, _, err := s.Stage(ctx, 1, rank1)
	require.NoError(t, err, "a second rank of the same report takes no new place")
	assert.Equal(t, dir, dir1)
	// The worker may delete its own directory as soon as Stage returns.
	require.NoError(t, os.RemoveAll(rank0))
	for name, want := range map[string]string{"model.pt": "weights", "opt/state.pt": "momentum", "shard_1.pt": "shard"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
	}

	// Report 2 waits for report 1's place.
	staged := make(chan error, 1)
	go func() {
		_, _, err := s.Stage(ctx, 2, rank1)
		staged <- err
	}()
	select {
	case err := <-staged:
		t.Fatalf("report 2 was staged while report 1 held the only place (err %v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, s.Release(1))
	require.NoError(t, <-staged)
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "released files are deleted")

	// A wait ends with its context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = s.Stage(cctx, 3, rank1)
	assert.ErrorIs(t, err, context.Canceled)

	require.NoError(t, s.Close())
	_, err = os.Stat(filepath.Join(filepath.Dir(dir)))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestStagerRefusesWhatIsNotADirectory(t *testing.T) {
	s, err := New(t.TempDir(), 2)
	require.NoError(t, err)
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, _, err = s.Stage(t.Context(), 1, f)
	assert.ErrorContains(t, err, "is not a directory")
	_, _, err = s.Stage(t.Context(), 1, filepath.Join(t.TempDir(), "missing"))
	assert.Error(t, err)
}

// A Area owns its directory: what a crashed process staged there
// (whole reports, half-copied files) is gone once a new one starts, and
// nothing outside it is touched.
func TestNewStagerSweepsLeftovers(t *testing.T) {
	jobDir := testutil.WriteFiles(t, map[string]string{
		"staging/report_3/model.pt":         "gigabytes",
		"staging/report_3/opt/.staging-123": "half a file",
		"staging/report_4/shard_1.pt":       "more",
		"logs/rank_0.log":                   "kept",
	})
	s, err := New(filepath.Join(jobDir, "staging"), 2)
	require.NoError(t, err)
	left, err := os.ReadDir(filepath.Join(jobDir, "staging"))
	require.NoError(t, err, "the staging directory itself is there")
	assert.Empty(t, left, "a previous process's staged files are swept")
	assert.FileExists(t, filepath.Join(jobDir, "logs", "rank_0.log"))

	// The new Area works as usual.
	dir, _, err := s.Stage(t.Context(), 1, testutil.WriteFiles(t, map[string]string{"a.pt": "a"}))
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(dir, "a.pt"))
	require.NoError(t, s.Close())
}
