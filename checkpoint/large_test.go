package checkpoint_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
)

// A checkpoint of a few hundred MB makes the round trip through each
// backend byte for byte: every file's SHA-256 after download is the one
// before upload, and the manifest agrees.
func TestLargeRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 320 MiB through each backend")
	}
	src := t.TempDir()
	want := map[string][32]byte{}
	sizes := map[string]int{"model.pt": 192 << 20, "optim.pt": 96 << 20, "shards/rank_1.pt": 32<<20 + 7}
	seed := uint64(40)
	for name, n := range sizes {
		seed++
		data := randomBytes(seed, n)
		p := filepath.Join(src, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
		want[name] = sha256.Sum256(data)
	}
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		ctx := context.Background()
		r := newRun(t, s, "large")
		m, err := r.Commit(ctx, 1, src, map[string]any{"epoch": 7}, 2)
		require.NoError(t, err)
		require.Equal(t, int64(320<<20+7), m.Size())
		for _, f := range m.Files {
			sum := want[f.Path]
			require.Equal(t, fmt.Sprintf("%x", sum[:]), f.SHA256, "manifest sha256 of %s", f.Path)
		}
		dst := t.TempDir()
		require.NoError(t, r.Download(ctx, m, dst))
		for name, sum := range want {
			f, err := os.Open(filepath.Join(dst, filepath.FromSlash(name)))
			require.NoError(t, err)
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			require.NoError(t, err)
			require.Equal(t, sum[:], h.Sum(nil), "%s after the round trip", name)
		}
	})
}
