package testutil

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
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

	cmd       *exec.Cmd
	out       *lockedBuffer
	done      chan struct{} // closed when the server process has been reaped
	client    *minio.Client
	transport *http.Transport
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
	bin := minioBinary()
	if bin == "" {
		missing(t, "the minio server (go install github.com/minio/minio@latest)")
	}

	s := &MinIOServer{
		AccessKey: "rtrain-" + randomHex(4),
		SecretKey: randomHex(16),
		out:       &lockedBuffer{},
		done:      make(chan struct{}),
	}
	// Picking a free port and handing it to minio races with other
	// processes that bind ports; a few tries make a collision harmless.
	var err error
	for try := 0; try < 3; try++ {
		if err = s.start(t, bin); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start minio: %v\n%s", err, s.out.String())
	}
	t.Cleanup(s.stop)

	// One client for the helpers; its idle connections are closed at the
	// end so that tests checking for leaked goroutines pass.
	s.transport, err = minio.DefaultTransport(false)
	if err != nil {
		t.Fatalf("minio transport: %v", err)
	}
	t.Cleanup(s.transport.CloseIdleConnections)
	s.client, err = minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Transport:    s.transport,
		BucketLookup: minio.BucketLookupPath,
		Region:       "us-east-1",
	})
	if err != nil {
		t.Fatalf("minio client: %v", err)
	}
	s.Bucket = s.NewBucket(t)
	return s
}

// minioBinary finds minio on PATH, else where `go install` puts it.
func minioBinary() string {
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go") // go's default
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "minio")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func (s *MinIOServer) start(t testing.TB, bin string) error {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Endpoint = "http://" + addr
	s.out.Reset()
	s.done = make(chan struct{})

	// The console gets a port of its own even though it is off; ":0" lets
	// the kernel choose one so it never collides with ours.
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:0", t.TempDir())
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// Its own process group, so a stray child cannot outlive the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	s.cmd = cmd
	done := s.done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitReady(ctx, s.Endpoint, done); err != nil {
		s.stop()
		return err
	}
	return nil
}

// waitReady polls MinIO's readiness endpoint until it answers 200, the
// process exits or ctx ends.
func waitReady(ctx context.Context, endpoint string, exited <-chan struct{}) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: time.Second, Transport: tr}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/minio/health/ready", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("minio exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("minio not ready at %s: %w", endpoint, ctx.Err())
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM to the server's process group and waits; MinIO
// that ignores it for 10 seconds is killed.
func (s *MinIOServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.done
	}
}

// NewBucket creates another empty bucket on the server and returns its
// name: tests sharing one server stay apart this way.
func (s *MinIOServer) NewBucket(t testing.TB) string {
	t.Helper()
	name := "test-" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v\n%s", name, err, s.out.String())
	}
	return name
}

// Client is a minio-go client with the root credentials, for a test to
// look at or damage what is stored behind the code under test. It is
// valid until the test ends.
func (s *MinIOServer) Client() *minio.Client { return s.client }

// Env is the AWS_* environment that points an S3 client (ours in a child
// process, or the aws CLI) at this server.
func (s *MinIOServer) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_ENDPOINT_URL=" + s.Endpoint,
		"AWS_REGION=us-east-1",
	}
}

// Log is what the server has printed so far, for failure messages.
func (s *MinIOServer) Log() string { return s.out.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lockedBuffer collects a child's output, which its own goroutines write
// while the test may read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}
