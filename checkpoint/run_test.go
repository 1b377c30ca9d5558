package checkpoint_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
)

func TestCommitListDownload(t *testing.T) {
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		ctx := context.Background()
		r := newRun(t, s, "resnet")
		want := sampleTree(1)

		latest, err := r.Latest(ctx)
		require.NoError(t, err)
		require.Nil(t, latest, "latest of an empty run")
		next, err := r.NextIndex(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, next, "next index of an empty run")

		m, err := r.Commit(ctx, 1, writeTree(t, want), map[string]any{"loss": 0.25, "step": 100, "tag": "a"}, 4)
		require.NoError(t, err)
		assert.Equal(t, 1, m.Index)
		assert.Equal(t, 4, m.WorldSize)
		assert.Equal(t, s.URI("resnet/checkpoint_000001"), m.URI)
		require.Len(t, m.Files, len(want))
		for i, f := range m.Files {
			if i > 0 {
				assert.Less(t, m.Files[i-1].Path, f.Path, "files sorted by path")
			}
			assert.Equal(t, int64(len(want[f.Path])), f.Size, "size of %s", f.Path)
			assert.Len(t, f.SHA256, 64, "sha256 of %s", f.Path)
		}

		list, err := r.List(ctx)
		require.NoError(t, err)
		require.Equal(t, []int{1}, indices(list))
		got := list[0]
		assert.Equal(t, m.Files, got.Files)
		assert.Equal(t, m.URI, got.URI)
		assert.True(t, m.Time.Equal(got.Time), "time %v, want %v", got.Time, m.Time)
		// Metrics come back as JSON decodes them.
		assert.Equal(t, map[string]any{"loss": 0.25, "step": 100.0, "tag": "a"}, got.Metrics)

		latest, err = r.Latest(ctx)
		require.NoError(t, err)
		require.NotNil(t, latest)
		assert.Equal(t, 1, latest.Index)
		g, err := r.Get(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, m.Files, g.Files)
		_, err = r.Get(ctx, 2)
		require.ErrorIs(t, err, checkpoint.ErrNotFound)

		requireDownload(t, r, got, want)

		// The stored manifest is the documented JSON.
		raw, err := s.GetBytes(ctx, "resnet/checkpoint_000001/"+checkpoint.ManifestName)
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, json.Unmarshal(raw, &doc))
		for _, k := range []string{"index", "metrics", "time", "world_size", "files"} {
			assert.Contains(t, doc, k)
		}
		file0 := doc["files"].([]any)[0].(map[string]any)
		assert.ElementsMatch(t, []string{"path", "size", "sha256"}, mapKeys(file0))

		next, err = r.NextIndex(ctx)
		require.NoError(t, err)
		assert.Equal(t, 2, next)

		runs, err := checkpoint.Runs(ctx, s)
		require.NoError(t, err)
		assert.Equal(t, []string{"resnet"}, runs)
	})
}

func mapKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// A commit that fails at any point leaves no checkpoint, keeps the earlier
// one intact, and the same index can be committed again afterwards.
func TestCommitFailureLeavesNoCheckpoint(t *testing.T) {
	errInjected := errors.New("injected failure")
	tests := []struct {
		name string
		// hook arms h to fail the commit; cancel cancels its context.
		hook     func(h *hookStorage, cancel context.CancelFunc)
		wantErr  error
		wantText string
	}{
		{
			name: "context cancelled after the first file",
			hook: func(h *hookStorage, cancel context.CancelFunc) {
				var n atomic.Int32
				h.afterPut = func(string) {
					if n.Add(1) == 1 {
						cancel()
					}
				}
			},
			wantErr: context.Canceled,
		},
		{
			name: "storage fails on one file",
			hook: func(h *hookStorage, _ context.CancelFunc) {
				h.beforePut = func(key, _ string) error {
					if strings.HasSuffix(key, "/b.bin") {
						return errInjected
					}
					return nil
				}
			},
			wantErr: errInjected,
		},
		{
			name: "file vanishes before it is stored",
			hook: func(h *hookStorage, _ context.CancelFunc) {
				h.beforePut = func(key, localPath string) error {
					if strings.HasSuffix(key, "/sub/c.bin") {
						return os.Remove(localPath)
					}
					return nil
				}
			},
			wantErr: os.ErrNotExist,
		},
		{
			name: "file grows while it is stored",
			hook: func(h *hookStorage, _ context.CancelFunc) {
				h.beforePut = func(key, localPath string) error {
					if !strings.HasSuffix(key, "/a.bin") {
						return nil
					}
					f, err := os.OpenFile(localPath, os.O_APPEND|os.O_WRONLY, 0)
					if err != nil {
						return err
					}
					defer f.Close()
					_, err = f.WriteString("more")
					return err
				}
			},
			wantText: "a.bin changed while it was stored",
		},
	}
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := context.Background()
				h := &hookStorage{Storage: s}
				r := newRun(t, h, strings.ReplaceAll(tt.name, " ", "-"))
				first := smallTree(10)
				_, err := r.Commit(ctx, 1, writeTree(t, first), map[string]any{"loss": 1.0}, 2)
				require.NoError(t, err)

				second := smallTree(20)
				dir := writeTree(t, second)
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				tt.hook(h, cancel)
				_, err = r.Commit(cctx, 2, dir, nil, 2)
				require.Error(t, err)
				if tt.wantErr != nil {
					require.ErrorIs(t, err, tt.wantErr)
				}
				require.ErrorContains(t, err, tt.wantText)
				h.beforePut, h.afterPut = nil, nil

				list, err := r.List(ctx)
				require.NoError(t, err)
				require.Equal(t, []int{1}, indices(list), "checkpoints after a failed commit")
				latest, err := r.Latest(ctx)
				require.NoError(t, err)
				require.Equal(t, 1, latest.Index)
				_, err = r.Get(ctx, 2)
				require.ErrorIs(t, err, checkpoint.ErrNotFound)
				requireDownload(t, r, list[0], first)

				// A retry of the same index replaces what the failure left.
				dir = writeTree(t, second)
				m, err := r.Commit(ctx, 2, dir, nil, 2)
				require.NoError(t, err)
				requireDownload(t, r, m, second)
				list, err = r.List(ctx)
				require.NoError(t, err)
				require.Equal(t, []int{1, 2}, indices(list))
			})
		}
	})
}

// Leftovers of a crashed attempt at an index, including a file where the
// new attempt needs a directory and a temporary file, do not stop a new
// commit there and do not end up in it.
func TestCommitOverPartialDir(t *testing.T) {
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		ctx := context.Background()
		r := newRun(t, s, "run")
		stale := map[string][]byte{
			"run/checkpoint_000003/model.pt":          []byte("half a model"),
			"run/checkpoint_000003/old_only.bin":      []byte("not in the new checkpoint"),
			"run/checkpoint_000003/weights":           []byte("a file where a directory goes"),
			"run/checkpoint_000003/.rtrain-tmp-12345": []byte("a crashed write"),
		}
		for k, v := range stale {
			require.NoError(t, s.PutBytes(ctx, k, v))
		}
		list, err := r.List(ctx)
		require.NoError(t, err)
		require.Empty(t, list, "a partial directory is no checkpoint")
		next, err := r.NextIndex(ctx)
		require.NoError(t, err)
		require.Equal(t, 4, next, "next index skips a partial directory")

		want := tree{"model.pt": randomBytes(3, 5000), "weights/layer0.bin": randomBytes(4, 100)}
		m, err := r.Commit(ctx, 3, writeTree(t, want), nil, 1)
		require.NoError(t, err)
		requireDownload(t, r, m, want)

		objs, err := s.List(ctx, "run/checkpoint_000003/")
		require.NoError(t, err)
		var keys []string
		for _, o := range objs {
			keys = append(keys, o.Key)
		}
		assert.ElementsMatch(t, []string{
			"run/checkpoint_000003/" + checkpoint.ManifestName,
			"run/checkpoint_000003/model.pt",
			"run/checkpoint_000003/weights/layer0.bin",
		}, keys)

		// A committed index is never overwritten.
		_, err = r.Commit(ctx, 3, writeTree(t, want), nil, 1)
		require.ErrorIs(t, err, checkpoint.ErrExists)
	})
}

// Only directories with a valid manifest of their own index are listed.
func TestManifestlessDirsAreNotListed(t *testing.T) {
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		ctx := context.Background()
		r := newRun(t, s, "run")
		want := smallTree(5)
		m, err := r.Commit(ctx, 2, writeTree(t, want), nil, 1)
		require.NoError(t, err)
		good, err := s.GetBytes(ctx, "run/checkpoint_000002/"+checkpoint.ManifestName)
		require.NoError(t, err)

		junk := map[string][]byte{
			"run/checkpoint_000001/a.bin":                       []byte("files, no manifest"),
			"run/checkpoint_000004/" + checkpoint.ManifestName:  good[:len(good)/2], // torn
			"run/checkpoint_000005/" + checkpoint.ManifestName:  good,               // says index 2
			"run/checkpoint_000006/" + checkpoint.ManifestName:  []byte(`{"index":6,"files":[{"path":"../../etc/passwd","size":1,"sha256":"` + strings.Repeat("0", 64) + `"}]}`),
			"run/checkpoint_0000007/" + checkpoint.ManifestName: []byte(`{"index":7}`), // not a name we write
			"run/notes.txt": []byte("not a checkpoint"),
			"run/checkpoint_000008/sub/" + checkpoint.ManifestName:        []byte(`{"index":8}`), // not at the top
			"otherrun/checkpoint_000001/" + checkpoint.ManifestName:       good,
			"otherrun/checkpoint_000001/extra/" + checkpoint.ManifestName: []byte("x"),
		}
		for k, v := range junk {
			require.NoError(t, s.PutBytes(ctx, k, v))
		}
		list, err := r.List(ctx)
		require.NoError(t, err)
		require.Equal(t, []int{2}, indices(list))
		requireDownload(t, r, m, want)
		for _, i := range []int{1, 4, 5, 6, 8} {
			_, err := r.Get(ctx, i)
			assert.ErrorIs(t, err, checkpoint.ErrNotFound, "get %d", i)
		}
		next, err := r.NextIndex(ctx)
		require.NoError(t, err)
		assert.Equal(t, 9, next)

		runs, err := checkpoint.Runs(ctx, s)
		require.NoError(t, err)
		assert.Equal(t, []string{"otherrun", "run"}, runs)
	})
}

func TestDownloadDetectsCorruption(t *testing.T) {
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		ctx := context.Background()
		r := newRun(t, s, "run")
		want := smallTree(7)
		m, err := r.Commit(ctx, 1, writeTree(t, want), nil, 1)
		require.NoError(t, err)

		// Same size, different bytes: only the hash can tell.
		bad := append([]byte(nil), want["sub/c.bin"]...)
		bad[len(bad)/2] ^= 0xff
		require.NoError(t, s.PutBytes(ctx, "run/checkpoint_000001/sub/c.bin", bad))
		dst := t.TempDir()
		err = r.Download(ctx, m, dst)
		require.ErrorIs(t, err, checkpoint.ErrCorrupt)
		require.Contains(t, err.Error(), "sub/c.bin")
		require.NoFileExists(t, filepath.Join(dst, "sub", "c.bin"), "a corrupt file is not left behind")

		// A lost file is named too.
		require.NoError(t, s.PutBytes(ctx, "run/checkpoint_000001/sub/c.bin", want["sub/c.bin"]))
		require.NoError(t, s.Delete(ctx, "run/checkpoint_000001/a.bin"))
		err = r.Download(ctx, m, t.TempDir())
		require.ErrorIs(t, err, checkpoint.ErrNotFound)
		require.Contains(t, err.Error(), "a.bin")
	})
}

func TestCommitRefusesBadInput(t *testing.T) {
	s := newFileStorage(t)
	r := newRun(t, s, "run")
	ctx := context.Background()

	withManifest := writeTree(t, tree{checkpoint.ManifestName: []byte("{}")})
	_, err := r.Commit(ctx, 1, withManifest, nil, 1)
	require.ErrorContains(t, err, checkpoint.ManifestName)

	// Deeper down the name is just a file.
	nested := tree{"sub/" + checkpoint.ManifestName: []byte("{}")}
	m, err := r.Commit(ctx, 1, writeTree(t, nested), nil, 1)
	require.NoError(t, err)
	requireDownload(t, r, m, nested)

	fifo := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(fifo, "pipe"), 0o644))
	_, err = r.Commit(ctx, 2, fifo, nil, 1)
	require.ErrorContains(t, err, "not a regular file")

	_, err = r.Commit(ctx, 2, filepath.Join(t.TempDir(), "missing"), nil, 1)
	require.ErrorIs(t, err, os.ErrNotExist)

	_, err = r.Commit(ctx, -1, t.TempDir(), nil, 1)
	require.Error(t, err)

	_, err = r.Commit(ctx, 2, t.TempDir(), map[string]any{"f": func() {}}, 1)
	require.ErrorContains(t, err, "metrics")

	list, err := r.List(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{1}, indices(list), "refused commits store nothing")

	for _, name := range []string{"", ".", "..", "a/b"} {
		_, err := checkpoint.NewRun(s, name)
		require.Error(t, err, "run name %q", name)
	}
}

// Symbolic links to files are stored as the file's content; NaN metrics
// survive as strings.
func TestCommitSymlinkAndNaN(t *testing.T) {
	ctx := context.Background()
	r := newRun(t, newFileStorage(t), "run")
	dir := writeTree(t, tree{"real.bin": []byte("content")})
	require.NoError(t, os.Symlink("real.bin", filepath.Join(dir, "link.bin")))
	m, err := r.Commit(ctx, 1, dir, map[string]any{"loss": math.NaN(), "acc": math.Inf(1)}, 1)
	require.NoError(t, err)
	requireDownload(t, r, m, tree{"real.bin": []byte("content"), "link.bin": []byte("content")})
	got, err := r.Get(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"loss": "NaN", "acc": "+Inf"}, got.Metrics)
}
