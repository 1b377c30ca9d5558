package checkpoint_test

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/checkpoint/file"
	"github.com/rtrain/rtrain/checkpoint/s3"
	"github.com/rtrain/rtrain/internal/testutil"
)

// Uploads, downloads and leases start goroutines (ours and minio-go's);
// all must be gone once the storages are closed and the leases released.
// Run as a child of TestCommitKilled, the binary commits instead of
// testing; as one of TestRunLeaseAfterCrash, it holds a lease.
func TestMain(m *testing.M) {
	if loc := os.Getenv(childLocationEnv); loc != "" {
		commitChild(loc, os.Getenv(childDirEnv))
		return
	}
	if loc := os.Getenv(leaseChildEnv); loc != "" {
		leaseChild(loc)
		return
	}
	goleak.VerifyTestMain(m)
}

// eachStorage runs fn once per backend: a fresh local directory, and a
// fresh bucket (under a prefix, as users have) on a real MinIO server.
func eachStorage(t *testing.T, fn func(t *testing.T, s checkpoint.Storage)) {
	t.Helper()
	t.Run("file", func(t *testing.T) {
		t.Parallel()
		fn(t, newFileStorage(t))
	})
	t.Run("s3", func(t *testing.T) {
		t.Parallel()
		srv := testutil.MinIO(t)
		fn(t, newS3Storage(t, srv, srv.Endpoint))
	})
}

func newFileStorage(t testing.TB) *file.Storage {
	t.Helper()
	s, err := file.New(t.TempDir())
	require.NoError(t, err)
	return s
}

// newS3Storage connects to srv's bucket through endpoint (srv's own, or a
// proxy in front of it) with static credentials.
func newS3Storage(t testing.TB, srv *testutil.MinIOServer, endpoint string) *s3.Storage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3.New(ctx, srv.Bucket, "results/team", s3.Options{
		Endpoint:  endpoint,
		Region:    "us-east-1",
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
	})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func newRun(t testing.TB, s checkpoint.Storage, name string) *checkpoint.Run {
	t.Helper()
	r, err := checkpoint.NewRun(s, name)
	require.NoError(t, err)
	return r
}

// tree is a checkpoint directory's content: relative path → bytes.
type tree map[string][]byte

// randomBytes is n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	_, _ = r.Read(b)
	return b
}

// sampleTree is what a training script might save: a large file that
// takes a multipart upload, a subdirectory, an empty file.
func sampleTree(seed uint64) tree {
	return tree{
		"model.pt":              randomBytes(seed, 20<<20+123),
		"optim/state.bin":       randomBytes(seed+1, 1<<20),
		"optim/nested/deep.txt": []byte("deep\n"),
		"empty":                 {},
		"meta.json":             []byte(`{"epoch": 3}`),
	}
}

func smallTree(seed uint64) tree {
	return tree{
		"a.bin":     randomBytes(seed, 1000),
		"b.bin":     randomBytes(seed+1, 2000),
		"sub/c.bin": randomBytes(seed+2, 3000),
	}
}

// writeTree writes tr into a fresh directory and returns it.
func writeTree(t testing.TB, tr tree) string {
	t.Helper()
	dir := t.TempDir()
	for rel, data := range tr {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
	return dir
}

// readTree reads every file under dir.
func readTree(t testing.TB, dir string) tree {
	t.Helper()
	got := tree{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		got[filepath.ToSlash(rel)] = b
		return err
	})
	require.NoError(t, err)
	return got
}

// requireTree fails unless dir holds exactly want, bit for bit.
func requireTree(t testing.TB, want tree, dir string) {
	t.Helper()
	got := readTree(t, dir)
	require.Len(t, got, len(want), "files in %s", dir)
	for rel, data := range want {
		g, ok := got[rel]
		require.True(t, ok, "%s missing from %s", rel, dir)
		require.True(t, bytes.Equal(data, g), "%s: %d bytes differ from the %d committed", rel, len(g), len(data))
	}
}

// requireDownload downloads m and checks it is exactly want.
func requireDownload(t testing.TB, r *checkpoint.Run, m checkpoint.Manifest, want tree) {
	t.Helper()
	dst := t.TempDir()
	require.NoError(t, r.Download(context.Background(), m, dst))
	requireTree(t, want, dst)
}

func indices(ms []checkpoint.Manifest) []int {
	out := []int{}
	for _, m := range ms {
		out = append(out, m.Index)
	}
	return out
}

// hookStorage is a real Storage with hooks around some calls, to fail or
// cancel a commit at a chosen point and to watch the order of deletes.
type hookStorage struct {
	checkpoint.Storage
	beforePut func(key, localPath string) error
	afterPut  func(key string)
	onDelete  func(keys []string)
}

func (h *hookStorage) PutFile(ctx context.Context, key, localPath string) error {
	if h.beforePut != nil {
		if err := h.beforePut(key, localPath); err != nil {
			return err
		}
	}
	if err := h.Storage.PutFile(ctx, key, localPath); err != nil {
		return err
	}
	if h.afterPut != nil {
		h.afterPut(key)
	}
	return nil
}

func (h *hookStorage) Delete(ctx context.Context, keys ...string) error {
	if h.onDelete != nil {
		h.onDelete(keys)
	}
	return h.Storage.Delete(ctx, keys...)
}

// recorder collects calls from concurrent goroutines.
type recorder struct {
	mu    sync.Mutex
	calls [][]string
}

func (r *recorder) add(keys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, append([]string(nil), keys...))
}

var _ io.Closer = (*s3.Storage)(nil)
