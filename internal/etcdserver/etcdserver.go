package etcdserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoBinary is returned (wrapped) by Start when no etcd binary is
// installed; scripts/install-deps.sh test installs Debian's etcd-server.
var ErrNoBinary = errors.New("etcd not found on PATH or at /usr/bin/etcd; run scripts/install-deps.sh test (apt-get install etcd-server)")

const (
	// readyTimeout bounds the wait for a started server to answer; a
	// single-member etcd is ready in well under a second, but a busy
	// 2-core machine running the race detector is slower.
	readyTimeout = 30 * time.Second
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
	// startTries covers the race between picking free ports and etcd
	// binding them: another process may take one in between.
	startTries = 3
)

// readyMarks are what etcd logs once it serves clients (after its member
// has joined the raft cluster and it has a leader): etcd 3.4's zap logger
// says "serving client traffic insecurely", later versions and the
// capnslog logger "ready to serve client requests". Only a server run
// through Options.Command, which this process may not reach, is judged by
// its log alone; the others must also answer /health.
var readyMarks = []string{"serving client traffic", "ready to serve client requests"}

// Options says where and how a Server runs.
type Options struct {
	// Dir is the data directory, created (mode 0700) if missing. It is
	// required, and kept by Restart: the caller owns it (t.TempDir()).
	Dir string
	// Host is the address etcd listens on and advertises to clients and
	// peers; "" means 127.0.0.1. A network namespace's address needs
	// Command as well.
	Host string
	// Command makes the etcd process from the binary and its arguments;
	// nil means exec.Command. Pass a netns.Host's Command to run etcd in
	// that host's network namespace. It gets context.Background(): the
	// process lives until Stop, Kill or Close, not as long as Start's ctx.
	// The command's process must be etcd itself (ip netns exec replaces
	// itself with it), so that signals reach it.
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
	// Name is the member's name; "" means "default".
	Name string
}

// Server is a single-member etcd cluster process.
type Server struct {
	opts       Options
	bin        string
	clientPort int
	peerPort   int
	out        *lockedBuffer
	outMark    int // where the current run's output starts in out

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil before the first start
	done   chan struct{} // closed when cmd has been reaped
	closed bool
}

// Binary finds etcd on PATH, else Debian's /usr/bin/etcd; "" when there is
// none.
func Binary() string {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	if fi, err := os.Stat("/usr/bin/etcd"); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return "/usr/bin/etcd"
	}
	return ""
}

// Start runs etcd on free ports of opts.Host with its data in opts.Dir and
// waits until it serves clients, or ctx ends. The process outlives ctx:
// Close stops it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin := Binary()
	if bin == "" {
		return nil, fmt.Errorf("etcdserver: %w", ErrNoBinary)
	}
	if opts.Dir == "" {
		return nil, errors.New("etcdserver: Options.Dir is required")
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Name == "" {
		opts.Name = "default"
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcdserver: %w", err)
	}
	s := &Server{opts: opts, bin: bin, out: &lockedBuffer{}}
	var err error
	for range startTries {
		if s.clientPort, s.peerPort, err = freePorts(); err != nil {
			break
		}
		if err = s.start(ctx); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("etcdserver: start %s: %w\n%s", bin, err, s.out.String())
	}
	return s, nil
}

// start runs etcd on s's ports and waits until it is ready; on failure the
// process is gone when it returns.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("server closed")
	}
	s.outMark = s.out.Len()
	peerURL := "http://" + net.JoinHostPort(s.opts.Host, strconv.Itoa(s.peerPort))
	args := []string{
		"--name", s.opts.Name,
		"--data-dir", s.opts.Dir,
		"--listen-client-urls", s.ClientURL(),
		"--advertise-client-urls", s.ClientURL(),
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", s.opts.Name + "=" + peerURL,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-outputs", "stderr",
	}
	newCmd := s.opts.Command
	if newCmd == nil {
		newCmd = func(_ context.Context, name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
	}
	cmd := newCmd(context.Background(), s.bin, args...)
	cmd.Env = environ()
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// Its own process group, so that a signal reaches etcd even when
	// Command wraps it.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := s.waitReady(ctx, done); err != nil {
		signal(cmd, syscall.SIGKILL, done, 0)
		return err
	}
	return nil
}

// environ is this process's environment without ETCD_* variables, which
// etcd would read as flags.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	// etcd 3.4 refuses to start on architectures it calls unsupported
	// unless told to.
	if runtime.GOARCH != "amd64" {
		env = append(env, "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	}
	return env
}

// waitReady waits until etcd logs that it serves clients and, where this
// process can reach it, its /health says so; or until it exits or ctx
// ends.
func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: time.Second, Transport: tr}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.loggedReady() && (s.opts.Command != nil || healthy(ctx, client, s.ClientURL())) {
			return nil
		}
		select {
		case <-exited:
			return errors.New("etcd exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("etcd not ready at %s: %w", s.ClientURL(), ctx.Err())
		case <-tick.C:
		}
	}
}

func (s *Server) loggedReady() bool {
	log := s.out.String()[s.outMark:]
	for _, m := range readyMarks {
		if strings.Contains(log, m) {
			return true
		}
	}
	return false
}

// healthy reports whether etcd's /health answers {"health":"true"}, which
// it does once the member has a raft leader.
func healthy(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(body.String(), `"health":"true"`)
}

// signal sends sig to cmd's process group and waits for the process to be
// reaped; after grace (when not 0) it sends SIGKILL instead.
func signal(cmd *exec.Cmd, sig syscall.Signal, done <-chan struct{}, grace time.Duration) {
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, sig)
	if grace == 0 {
		<-done
		return
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
}

// running returns the live process and its done channel, or nil.
func (s *Server) running() (*exec.Cmd, <-chan struct{}) {
	if s.cmd == nil {
		return nil, nil
	}
	select {
	case <-s.done:
		return nil, nil
	default:
		return s.cmd, s.done
	}
}

// Stop sends etcd SIGTERM and waits for it to exit; one that lingers for
// stopGrace is killed. The data directory and ports are kept for Restart.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd, done := s.running(); cmd != nil {
		signal(cmd, syscall.SIGTERM, done, stopGrace)
	}
}

// Kill sends etcd SIGKILL, as a crash: it gets no chance to finish what it
// was doing. It waits until the process is gone. The data directory and
// ports are kept for Restart.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd, done := s.running(); cmd != nil {
		signal(cmd, syscall.SIGKILL, done, 0)
	}
}

// Restart starts etcd again on the same ports with the same data
// directory, killing it first if it still runs, and waits until it serves
// clients or ctx ends. It fails after Close. It may be called from any
// goroutine.
func (s *Server) Restart(ctx context.Context) error {
	s.Kill()
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("etcdserver: restart: %w\n%s", err, s.Log())
	}
	return nil
}

// Close stops the server and waits for it to exit; the data directory is
// left for the caller. Calling it again does nothing; Restart fails after
// it.
func (s *Server) Close() {
	s.Stop()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// ClientURL is the URL clients reach etcd at, e.g.
// "http://127.0.0.1:40123".
func (s *Server) ClientURL() string { return "http://" + s.Addr() }

// Addr is the client address, host:port, e.g. "127.0.0.1:40123", as an
// etcd:// store URL names it.
func (s *Server) Addr() string { return net.JoinHostPort(s.opts.Host, strconv.Itoa(s.clientPort)) }

// Endpoints is ClientURL as a list, for clientv3.Config.Endpoints.
func (s *Server) Endpoints() []string { return []string{s.ClientURL()} }

// Dir is the data directory.
func (s *Server) Dir() string { return s.opts.Dir }

// Pid is the running etcd's process ID, or 0 while it is stopped.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd, _ := s.running(); cmd != nil {
		return cmd.Process.Pid
	}
	return 0
}

// Log is what the server has printed, over all its runs, for failure
// messages.
func (s *Server) Log() string { return s.out.String() }

// freePorts picks two distinct free TCP ports of 127.0.0.1. A fresh
// network namespace has every port free, so they serve there too.
func freePorts() (client, peer int, err error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		ls = append(ls, l)
	}
	return ls[0].Addr().(*net.TCPAddr).Port, ls[1].Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects the server's output, which exec's goroutines write
// while a caller may read it.
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

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}
