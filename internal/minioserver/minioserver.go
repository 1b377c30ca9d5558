// Package minioserver runs a real MinIO server on 127.0.0.1, for the tests
// (through internal/testutil) and for rtrain-bench: the S3 backend is
// checked and measured against the server users run, not a fake.
package minioserver

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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// ErrNoBinary is returned (wrapped) by Start when no minio binary is
// installed; scripts/install-deps.sh test installs one.
var ErrNoBinary = errors.New("minio server not found on PATH or in $(go env GOPATH)/bin; run scripts/install-deps.sh test or go install github.com/minio/minio@latest")

const (
	// readyTimeout bounds the wait for a started server to answer; MinIO
	// needs a few seconds on a busy 2-core machine.
	readyTimeout = 60 * time.Second
	// stopGrace is how long Close waits after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
	// startTries covers the race between picking a free port and MinIO
	// binding it: another process may take it in between.
	startTries = 3
)

// Server is a MinIO server process with its data in one directory.
type Server struct {
	// Endpoint is the server's URL, e.g. "http://127.0.0.1:40123".
	Endpoint string
	// AccessKey and SecretKey are the root credentials, random per server.
	AccessKey, SecretKey string
	// Dir is the data directory.
	Dir string

	cmd       *exec.Cmd
	out       *lockedBuffer
	done      chan struct{} // closed when the process has been reaped
	client    *minio.Client
	transport *http.Transport
	closeOnce sync.Once
	opts      Options
}

// Binary finds minio on PATH, else where `go install` puts it; "" when
// there is none.
func Binary() string {
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

// Options say where a MinIO server runs.
type Options struct {
	// Dir is the data directory, created if missing.
	Dir string
	// Host is the address the server listens on, and Command makes its
	// process (a netns.Host's Command runs it in that host's network
	// namespace). With Command set, the server listens on DefaultPort of
	// Host (a fresh namespace has it free), is ready when it prints its
	// API address, and has no Client: nothing outside the namespace
	// reaches it, so MakeBucket is the caller's, from inside it.
	Host    string
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
}

// DefaultPort is MinIO's own.
const DefaultPort = 9000

// Start runs a MinIO server on a free port of 127.0.0.1 with its data in
// dir (created if missing) and waits until it is ready, or ctx ends. The
// process outlives ctx: Close stops it.
func Start(ctx context.Context, dir string) (*Server, error) {
	return StartWith(ctx, Options{Dir: dir})
}

// StartWith is Start as opts say.
func StartWith(ctx context.Context, opts Options) (*Server, error) {
	dir := opts.Dir
	bin := Binary()
	if bin == "" {
		return nil, fmt.Errorf("minioserver: %w", ErrNoBinary)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("minioserver: %w", err)
	}
	s := &Server{
		AccessKey: "rtrain-" + randomHex(4),
		SecretKey: randomHex(16),
		Dir:       dir,
		out:       &lockedBuffer{},
		opts:      opts,
	}
	if s.opts.Host == "" {
		s.opts.Host = "127.0.0.1"
	}
	var err error
	if opts.Command != nil {
		if err := s.start(ctx, bin, DefaultPort); err != nil {
			return nil, fmt.Errorf("minioserver: start %s in its namespace: %w\n%s", bin, err, s.out.String())
		}
		return s, nil
	}
	for range startTries {
		var port int
		if port, err = freePort(); err != nil {
			break
		}
		if err = s.start(ctx, bin, port); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("minioserver: start %s: %w\n%s", bin, err, s.out.String())
	}

	// One client for MakeBucket and Client; Close closes its idle
	// connections so that callers checking for leaked goroutines pass.
	s.transport, err = minio.DefaultTransport(false)
	if err == nil {
		s.client, err = minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
			Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
			Transport:    s.transport,
			BucketLookup: minio.BucketLookupPath,
			Region:       "us-east-1",
		})
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("minioserver: client: %w", err)
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, bin string, port int) error {
	addr := net.JoinHostPort(s.opts.Host, strconv.Itoa(port))
	s.Endpoint = "http://" + addr
	s.out.Reset()
	s.done = make(chan struct{})

	// The console gets a port of its own even though it is off; ":0" lets
	// the kernel choose one so it never collides with ours.
	args := []string{"server", "--quiet", "--address", addr, "--console-address", net.JoinHostPort(s.opts.Host, "0"), s.Dir}
	newCmd := func(_ context.Context, name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
	if s.opts.Command != nil {
		// Not quiet: its banner is the one sign of readiness from outside.
		args, newCmd = slices.Delete(args, 1, 2), s.opts.Command
	}
	cmd := newCmd(context.Background(), bin, args...)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// Its own process group, so that Close reaches any child it starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	done := s.done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	ready := func() error { return waitReady(ctx, s.Endpoint, done) }
	if s.opts.Command != nil {
		ready = func() error { return s.waitBanner(ctx, "API: "+s.Endpoint, done) }
	}
	if err := ready(); err != nil {
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
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/minio/health/ready", nil)
		if err != nil {
			return err
		}
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

// waitBanner waits until the server has printed line, it exits or ctx
// ends.
func (s *Server) waitBanner(ctx context.Context, line string, exited <-chan struct{}) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(s.out.String(), line) {
		select {
		case <-exited:
			return errors.New("minio exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("minio never printed %q: %w", line, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// Restart kills the server (SIGKILL: no chance to finish what it was
// doing) and starts it again on the same address with the same data and
// credentials, as a crashed storage server that comes back.
func (s *Server) Restart(ctx context.Context) error {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	_, portStr, err := net.SplitHostPort(strings.TrimPrefix(s.Endpoint, "http://"))
	if err != nil {
		return fmt.Errorf("minioserver: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("minioserver: %w", err)
	}
	if err := s.start(ctx, Binary(), port); err != nil {
		return fmt.Errorf("minioserver: restart: %w\n%s", err, s.out.String())
	}
	return nil
}

// stop sends SIGTERM to the server's process group and waits; a MinIO
// that ignores it for stopGrace is killed.
func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.done
	}
}

// Close stops the server and waits for it to exit; the data directory is
// left for the caller. Calling it again does nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.stop()
		if s.transport != nil {
			s.transport.CloseIdleConnections()
		}
	})
}

// MakeBucket creates an empty bucket with a fresh name and returns the
// name: users of one server stay apart this way.
func (s *Server) MakeBucket(ctx context.Context) (string, error) {
	name := "test-" + randomHex(6)
	if err := s.client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		return "", fmt.Errorf("minioserver: make bucket %s: %w", name, err)
	}
	return name, nil
}

// Client is a minio-go client with the root credentials, valid until
// Close.
func (s *Server) Client() *minio.Client { return s.client }

// Env is the AWS_* environment that points an S3 client (ours in a child
// process, or the aws CLI) at this server.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_ENDPOINT_URL=" + s.Endpoint,
		"AWS_REGION=us-east-1",
	}
}

// Pid is the server's process ID, to look at its resource use in /proc.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Log is what the server has printed so far, for failure messages.
func (s *Server) Log() string { return s.out.String() }

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

// lockedBuffer collects the server's output, which its own goroutines
// write while a caller may read it.
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
