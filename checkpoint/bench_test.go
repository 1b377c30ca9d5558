package checkpoint_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/internal/testutil"
)

// benchTree is 256 MiB shaped like a sharded checkpoint: eight 24 MiB
// shards (multipart) and 64 small files of 1 MiB.
func benchTree() (tree, int64) {
	tr := tree{}
	var n int64
	for i := range 8 {
		tr[fmt.Sprintf("shard_%d.pt", i)] = randomBytes(uint64(i), 24<<20)
	}
	for i := range 64 {
		tr[fmt.Sprintf("extra/part_%02d.bin", i)] = randomBytes(uint64(100+i), 1<<20)
	}
	for _, b := range tr {
		n += int64(len(b))
	}
	return tr, n
}

func benchmarkCommit(b *testing.B, s checkpoint.Storage) {
	tr, size := benchTree()
	dir := writeTree(b, tr)
	r := newRun(b, s, "bench")
	ctx := context.Background()
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		_, err := r.Commit(ctx, i+1, dir, map[string]any{"loss": 1.0}, 8)
		require.NoError(b, err)
	}
}

func benchmarkDownload(b *testing.B, s checkpoint.Storage) {
	tr, size := benchTree()
	r := newRun(b, s, "bench")
	ctx := context.Background()
	m, err := r.Commit(ctx, 1, writeTree(b, tr), nil, 8)
	require.NoError(b, err)
	dst := b.TempDir()
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		require.NoError(b, r.Download(ctx, m, dst))
	}
}

// BenchmarkCommitS3 measures upload throughput (hash, upload, verify,
// manifest) of 256 MiB to a MinIO server on this machine.
func BenchmarkCommitS3(b *testing.B) {
	srv := testutil.MinIO(b)
	benchmarkCommit(b, newS3Storage(b, srv, srv.Endpoint))
}

// BenchmarkDownloadS3 measures download throughput, hash check included.
func BenchmarkDownloadS3(b *testing.B) {
	srv := testutil.MinIO(b)
	benchmarkDownload(b, newS3Storage(b, srv, srv.Endpoint))
}

// BenchmarkCommitFile is the local-directory baseline.
func BenchmarkCommitFile(b *testing.B) {
	benchmarkCommit(b, newFileStorage(b))
}
