package minioserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"go.uber.org/goleak"

	"github.com/rtrain/rtrain/internal/minioserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start is what testutil.MinIO does, without importing it: that package
// wraps this one.
func start(t *testing.T) *minioserver.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping a real MinIO server in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := minioserver.Start(ctx, t.TempDir())
	if errors.Is(err, minioserver.ErrNoBinary) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestServerStoresAndStops(t *testing.T) {
	s := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bucket, err := s.MakeBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.MakeBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bucket == other {
		t.Fatalf("two buckets named %q", bucket)
	}
	want := []byte("hello")
	if _, err := s.Client().PutObject(ctx, bucket, "k", bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := s.Client().GetObject(ctx, bucket, "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %q, %v; want %q", got, err, want)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", s.Pid())); err != nil {
		t.Errorf("Pid %d: %v", s.Pid(), err)
	}
	if len(s.Env()) != 4 {
		t.Errorf("Env = %q, want 4 AWS_* variables", s.Env())
	}

	s.Close()
	s.Close() // a second Close does nothing
	if c, err := net.Dial("tcp", strings.TrimPrefix(s.Endpoint, "http://")); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Close", s.Endpoint)
	}
}
