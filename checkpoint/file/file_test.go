package file_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint/file"
)

func TestNew(t *testing.T) {
	_, err := file.New("relative/dir")
	require.ErrorContains(t, err, "not absolute")

	f := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, err = file.New(f)
	require.ErrorContains(t, err, "not a directory")

	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := file.New(dir + "/")
	require.NoError(t, err)
	assert.Equal(t, dir, s.Root())
	assert.DirExists(t, dir)
}

// Objects are plain files a user can read, no temporary files stay
// behind, and Delete leaves no empty directories but keeps the root.
func TestFilesOnDisk(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := file.New(root)
	require.NoError(t, err)

	src := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.WriteFile(src, []byte("weights"), 0o600))
	require.NoError(t, s.PutFile(ctx, "run/ck/sub/w.bin", src))
	require.NoError(t, s.PutBytes(ctx, "run/ck/m.json", []byte("{}")))

	b, err := os.ReadFile(filepath.Join(root, "run", "ck", "sub", "w.bin"))
	require.NoError(t, err)
	assert.Equal(t, "weights", string(b))
	fi, err := os.Stat(filepath.Join(root, "run", "ck", "sub", "w.bin"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), "objects are readable like files the user wrote")
	assert.Equal(t, filepath.Join(root, "run", "ck", "m.json"), s.URI("run/ck/m.json"))

	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), file.TempPrefix) {
			t.Errorf("temporary file left: %s", p)
		}
		return err
	})
	require.NoError(t, err)

	require.NoError(t, s.Delete(ctx, "run/ck/sub/w.bin", "run/ck/m.json"))
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	assert.Empty(t, entries, "empty directories removed")
	assert.DirExists(t, root)
}

// A failed put leaves neither the object nor a temporary file.
func TestPutFileCancelled(t *testing.T) {
	root := t.TempDir()
	s, err := file.New(root)
	require.NoError(t, err)
	src := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.WriteFile(src, make([]byte, 1<<20), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.PutFile(ctx, "run/x", src), context.Canceled)
	objs, err := s.List(context.Background(), "")
	require.NoError(t, err)
	assert.Empty(t, objs)
}
