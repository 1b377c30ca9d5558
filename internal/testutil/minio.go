package testutil

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/rtrain/rtrain/internal/minioserver"
)

// MinIOServer is a real MinIO server on 127.0.0.1 that lives as long as
// the test that started it.
type MinIOServer struct {
	// Endpoint is the server's URL, e.g. "http://127.0.0.1:40123".
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Bucket is a bucket created empty for the test.
	Bucket string

	srv *minioserver.Server
}

// MinIO starts a MinIO server with its data in a fresh t.TempDir(), waits
// until it is ready and creates an empty bucket. The server is stopped
// (SIGTERM, then SIGKILL if it lingers) when t ends. Without a minio binary
// the test is skipped, or fails under CI.
func MinIO(t testing.TB) *MinIOServer {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping a real MinIO server in -short mode")
	}
	srv, err := minioserver.Start(context.Background(), t.TempDir())
	if errors.Is(err, minioserver.ErrNoBinary) {
		missing(t, "the minio server (go install github.com/minio/minio@latest)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	s := &MinIOServer{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, srv: srv}
	s.Bucket = s.NewBucket(t)
	return s
}

// NewBucket creates another empty bucket on the server and returns its
// name: tests sharing one server stay apart this way.
func (s *MinIOServer) NewBucket(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := s.srv.MakeBucket(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, s.srv.Log())
	}
	return name
}

// Client is a minio-go client with the root credentials, for a test to
// look at or damage what is stored behind the code under test. It is
// valid until the test ends.
func (s *MinIOServer) Client() *minio.Client { return s.srv.Client() }

// Env is the AWS_* environment that points an S3 client (ours in a child
// process, or the aws CLI) at this server.
func (s *MinIOServer) Env() []string { return s.srv.Env() }

// Log is what the server has printed so far, for failure messages.
func (s *MinIOServer) Log() string { return s.srv.Log() }

// Restart kills the server with SIGKILL and starts it again on the same
// address, data and credentials. It may be called from any goroutine.
func (s *MinIOServer) Restart() error { return s.srv.Restart(context.Background()) }

// MinIOWith starts a MinIO server as opts say (in a network namespace:
// Host and Command), stopped when t ends. It makes no bucket: nothing
// outside the namespace reaches the server.
func MinIOWith(t testing.TB, opts minioserver.Options) *MinIOServer {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping a real MinIO server in -short mode")
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	srv, err := minioserver.StartWith(context.Background(), opts)
	if errors.Is(err, minioserver.ErrNoBinary) {
		missing(t, "the minio server (go install github.com/minio/minio@latest)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return &MinIOServer{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, srv: srv}
}
