package checkpoint_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
)

func TestPrune(t *testing.T) {
	// Committed checkpoints 1, 2, 3, 5 and 6 (the latest, with the worst
	// possible score), a partial directory at 4 (below the latest: a
	// leftover) and one at 7 (above it: maybe a commit in progress).
	metrics := map[int]map[string]any{
		1: {"loss": 0.5},
		2: {}, // no loss reported
		3: {"loss": 0.9},
		5: {"loss": 0.1},
		6: {"loss": math.NaN()},
	}
	tests := []struct {
		name        string
		retention   checkpoint.Retention
		wantDeleted []int
		wantKept    []int
		wantErr     string
	}{
		{"keep all", checkpoint.Retention{}, []int{4}, []int{1, 2, 3, 5, 6}, ""},
		{"keep more than there are", checkpoint.Retention{Keep: 10}, []int{4}, []int{1, 2, 3, 5, 6}, ""},
		{"recency", checkpoint.Retention{Keep: 2}, []int{1, 2, 3, 4}, []int{5, 6}, ""},
		{"recency keep one", checkpoint.Retention{Keep: 1}, []int{1, 2, 3, 4, 5}, []int{6}, ""},
		// Ranked 5 (0.1), 1 (0.5), 3 (0.9), then 6 and 2 without a usable
		// score; 6 is kept regardless as the latest.
		{"min", checkpoint.Retention{Keep: 2, Score: "loss", Order: "min"}, []int{2, 3, 4}, []int{1, 5, 6}, ""},
		{"max", checkpoint.Retention{Keep: 2, Score: "loss", Order: "max"}, []int{2, 4, 5}, []int{1, 3, 6}, ""},
		{"max by default", checkpoint.Retention{Keep: 1, Score: "loss"}, []int{1, 2, 4, 5}, []int{3, 6}, ""},
		{"missing metrics rank last", checkpoint.Retention{Keep: 4, Score: "loss", Order: "min"}, []int{2, 4}, []int{1, 3, 5, 6}, ""},
		{"unknown metric ranks by recency", checkpoint.Retention{Keep: 2, Score: "acc"}, []int{1, 2, 3, 4}, []int{5, 6}, ""},
		{"bad order", checkpoint.Retention{Keep: 2, Score: "loss", Order: "best"}, nil, []int{1, 2, 3, 5, 6}, `order "best"`},
		{"negative keep", checkpoint.Retention{Keep: -1}, nil, []int{1, 2, 3, 5, 6}, "negative"},
	}
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				deletes := &recorder{}
				h := &hookStorage{Storage: s, onDelete: deletes.add}
				name := strings.ReplaceAll(tt.name, " ", "-")
				r := newRun(t, h, name)
				trees := map[int]tree{}
				for _, i := range []int{1, 2, 3, 5, 6} {
					trees[i] = smallTree(uint64(i))
					_, err := r.Commit(ctx, i, writeTree(t, trees[i]), metrics[i], 1)
					require.NoError(t, err)
				}
				for _, i := range []int{4, 7} {
					require.NoError(t, s.PutBytes(ctx, fmt.Sprintf("%s/checkpoint_%06d/part.bin", name, i), []byte("partial")))
				}
				deletes.calls = nil

				deleted, err := r.Prune(ctx, tt.retention)
				if tt.wantErr != "" {
					require.ErrorContains(t, err, tt.wantErr)
				} else {
					require.NoError(t, err)
				}
				assert.Equal(t, tt.wantDeleted, deleted, "deleted")

				list, err := r.List(ctx)
				require.NoError(t, err)
				assert.Equal(t, tt.wantKept, indices(list), "kept")
				for _, m := range list {
					requireDownload(t, r, m, trees[m.Index])
				}
				for _, i := range tt.wantDeleted {
					objs, err := s.List(ctx, fmt.Sprintf("%s/checkpoint_%06d/", name, i))
					require.NoError(t, err)
					assert.Empty(t, objs, "objects left of deleted checkpoint %d", i)
				}
				part7, err := s.List(ctx, name+"/checkpoint_000007/")
				require.NoError(t, err)
				assert.Len(t, part7, 1, "a partial directory above the latest is left alone")

				// Every deleted checkpoint lost its manifest in a call of
				// its own, before any call that deleted its files.
				for _, i := range tt.wantDeleted {
					if i == 4 {
						continue
					}
					dir := fmt.Sprintf("%s/checkpoint_%06d/", name, i)
					manifestCall := slices.IndexFunc(deletes.calls, func(keys []string) bool {
						return slices.Contains(keys, dir+checkpoint.ManifestName)
					})
					require.GreaterOrEqual(t, manifestCall, 0, "manifest of %d never deleted", i)
					assert.Len(t, deletes.calls[manifestCall], 1, "manifest of %d deleted alone", i)
					firstFileCall := slices.IndexFunc(deletes.calls, func(keys []string) bool {
						return slices.ContainsFunc(keys, func(k string) bool {
							return strings.HasPrefix(k, dir) && !strings.HasSuffix(k, checkpoint.ManifestName)
						})
					})
					assert.Greater(t, firstFileCall, manifestCall, "files of %d deleted before its manifest", i)
				}
			})
		}
	})
}

// Nothing is pruned from a run without a committed checkpoint: its
// partial directories may be commits in progress.
func TestPruneWithoutCommitted(t *testing.T) {
	ctx := context.Background()
	s := newFileStorage(t)
	r := newRun(t, s, "run")
	require.NoError(t, s.PutBytes(ctx, "run/checkpoint_000001/a.bin", []byte("partial")))
	deleted, err := r.Prune(ctx, checkpoint.Retention{Keep: 1})
	require.NoError(t, err)
	assert.Empty(t, deleted)
	objs, err := s.List(ctx, "run/")
	require.NoError(t, err)
	assert.Len(t, objs, 1)
}

func TestMetricNumber(t *testing.T) {
	for _, v := range []any{json.Number("0.5"), 0.5, float32(0.5)} {
		f, ok := checkpoint.MetricNumber(v)
		assert.True(t, ok, "%T", v)
		assert.Equal(t, 0.5, f)
	}
	for _, v := range []any{1, int64(1)} {
		f, ok := checkpoint.MetricNumber(v)
		assert.True(t, ok, "%T", v)
		assert.Equal(t, 1.0, f)
	}
	for _, v := range []any{"0.5", true, nil, math.NaN(), math.Inf(1), json.Number("x"), map[string]any{}} {
		_, ok := checkpoint.MetricNumber(v)
		assert.False(t, ok, "%#v is not a number", v)
	}
}
