package checkpoint_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
)

// Restore falls back past damaged checkpoints to the newest intact one,
// says which it skipped and why, never picks a partial checkpoint, and
// leaves what is stored as it found it.
func TestRestoreFallsBack(t *testing.T) {
	type damage struct {
		index int
		file  string
		// corrupt replaces the file with other bytes of the same size;
		// otherwise it is deleted.
		corrupt bool
	}
	tests := []struct {
		name        string
		damage      []damage
		wantIndex   int // 0: no intact checkpoint
		wantSkipped []int
		wantErr     error // of each skipped one
	}{
		{name: "intact", wantIndex: 3, wantSkipped: nil},
		{name: "corrupt file", damage: []damage{{3, "a.bin", true}}, wantIndex: 2, wantSkipped: []int{3}, wantErr: checkpoint.ErrCorrupt},
		{name: "missing file", damage: []damage{{3, "sub/c.bin", false}}, wantIndex: 2, wantSkipped: []int{3}, wantErr: checkpoint.ErrNotFound},
		{name: "two damaged", damage: []damage{{3, "b.bin", true}, {2, "sub/c.bin", true}}, wantIndex: 1, wantSkipped: []int{3, 2}, wantErr: checkpoint.ErrCorrupt},
		{name: "all damaged", damage: []damage{{3, "a.bin", true}, {2, "a.bin", true}, {1, "a.bin", true}}},
	}
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				name := fmt.Sprintf("run%d", i)
				r := newRun(t, s, name)
				trees := map[int]tree{}
				for index := 1; index <= 3; index++ {
					trees[index] = smallTree(uint64(index) * 10)
					_, err := r.Commit(ctx, index, writeTree(t, trees[index]), nil, 1)
					require.NoError(t, err)
				}
				// A partial checkpoint above them all is no candidate.
				require.NoError(t, s.PutBytes(ctx, name+"/checkpoint_000004/a.bin", []byte("partial")))
				stored := map[string][]byte{}
				for _, d := range tt.damage {
					key := fmt.Sprintf("%s/checkpoint_%06d/%s", name, d.index, d.file)
					if d.corrupt {
						b := append([]byte(nil), trees[d.index][d.file]...)
						b[len(b)/2] ^= 0x01
						require.NoError(t, s.PutBytes(ctx, key, b))
						stored[key] = b
					} else {
						require.NoError(t, s.Delete(ctx, key))
					}
				}
				latest, err := r.Latest(ctx)
				require.NoError(t, err)
				require.Equal(t, 3, latest.Index)

				dst := t.TempDir()
				res, err := r.Restore(ctx, *latest, dst)
				if tt.wantIndex == 0 {
					require.ErrorIs(t, err, checkpoint.ErrCorrupt)
					assert.NotContains(t, err.Error(), "\n")
					left, rerr := os.ReadDir(dst)
					require.NoError(t, rerr)
					assert.Empty(t, left, "damaged downloads are not left behind")
				} else {
					require.NoError(t, err)
					assert.Equal(t, tt.wantIndex, res.Manifest.Index, "checkpoint restored")
					assert.Equal(t, filepath.Join(dst, fmt.Sprintf("checkpoint_%06d", tt.wantIndex)), res.Dir)
					var skipped []int
					for _, d := range res.Skipped {
						skipped = append(skipped, d.Manifest.Index)
						assert.ErrorIs(t, d.Err, tt.wantErr, "why checkpoint %d was skipped", d.Manifest.Index)
					}
					assert.Equal(t, tt.wantSkipped, skipped, "checkpoints skipped, newest first")
					left, rerr := os.ReadDir(dst)
					require.NoError(t, rerr)
					require.Len(t, left, 1, "only the restored checkpoint is in %s", dst)
					requireTree(t, trees[tt.wantIndex], res.Dir)
				}

				// Nothing stored changed: damaged checkpoints stay, as
				// damaged as they were, for a person to look at.
				ms, err := r.List(ctx)
				require.NoError(t, err)
				assert.Equal(t, []int{1, 2, 3}, indices(ms))
				for key, want := range stored {
					got, err := s.GetBytes(ctx, key)
					require.NoError(t, err)
					assert.Equal(t, want, got, "%s as the damage left it", key)
				}
			})
		}
	})
}
