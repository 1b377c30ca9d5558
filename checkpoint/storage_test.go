package checkpoint_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
)

// The Storage contract, the same for every backend.
func TestStorageContract(t *testing.T) {
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		ctx := context.Background()
		src := filepath.Join(t.TempDir(), "src")
		big := randomBytes(9, 17<<20) // more than one part
		require.NoError(t, os.WriteFile(src, big, 0o644))

		require.NoError(t, s.PutFile(ctx, "r/a/big.bin", src))
		require.NoError(t, s.PutBytes(ctx, "r/a/small", []byte("small")))
		require.NoError(t, s.PutBytes(ctx, "r/ab", []byte("x")))
		require.NoError(t, s.PutBytes(ctx, "r/empty", nil))
		require.NoError(t, s.PutBytes(ctx, "top", []byte("t")))

		obj, err := s.Stat(ctx, "r/a/big.bin")
		require.NoError(t, err)
		assert.Equal(t, checkpoint.Object{Key: "r/a/big.bin", Size: int64(len(big))}, obj)

		dst := filepath.Join(t.TempDir(), "new", "dir", "big.bin")
		require.NoError(t, s.GetFile(ctx, "r/a/big.bin", dst))
		got, err := os.ReadFile(dst)
		require.NoError(t, err)
		require.Equal(t, big, got)

		// Overwriting is whole-object.
		require.NoError(t, s.PutBytes(ctx, "r/a/small", []byte("replaced")))
		b, err := s.GetBytes(ctx, "r/a/small")
		require.NoError(t, err)
		assert.Equal(t, "replaced", string(b))
		b, err = s.GetBytes(ctx, "r/empty")
		require.NoError(t, err)
		assert.Empty(t, b)
		emptyDst := filepath.Join(t.TempDir(), "empty")
		require.NoError(t, s.GetFile(ctx, "r/empty", emptyDst))
		assert.FileExists(t, emptyDst)

		list := func(prefix string) []checkpoint.Object {
			objs, err := s.List(ctx, prefix)
			require.NoError(t, err)
			return objs
		}
		// Prefixes are plain string prefixes, results sorted by key.
		assert.Equal(t, []checkpoint.Object{
			{Key: "r/a/big.bin", Size: int64(len(big))},
			{Key: "r/a/small", Size: 8},
			{Key: "r/ab", Size: 1},
			{Key: "r/empty", Size: 0},
		}, list("r/"))
		assert.Len(t, list("r/a"), 3)
		assert.Len(t, list("r/a/"), 2)
		assert.Len(t, list(""), 5)
		assert.Empty(t, list("nothing/"))

		for _, key := range []string{"missing", "r/a/missing"} {
			_, err := s.GetBytes(ctx, key)
			assert.ErrorIs(t, err, checkpoint.ErrNotFound, "get bytes %s", key)
			_, err = s.Stat(ctx, key)
			assert.ErrorIs(t, err, checkpoint.ErrNotFound, "stat %s", key)
			err = s.GetFile(ctx, key, filepath.Join(t.TempDir(), "x"))
			assert.ErrorIs(t, err, checkpoint.ErrNotFound, "get file %s", key)
		}

		require.NoError(t, s.Delete(ctx, "r/a/big.bin", "r/a/small", "r/never-was"))
		require.NoError(t, s.Delete(ctx))
		assert.Equal(t, []checkpoint.Object{{Key: "r/ab", Size: 1}, {Key: "r/empty", Size: 0}}, list("r/"))

		for _, key := range []string{"", "/abs", "a/../b", "a//b", "a/", "."} {
			assert.Error(t, s.PutBytes(ctx, key, nil), "put %q", key)
			_, err := s.GetBytes(ctx, key)
			assert.Error(t, err, "get %q", key)
			assert.Error(t, s.Delete(ctx, key), "delete %q", key)
		}
	})
}
