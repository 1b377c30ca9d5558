package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/agent"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/head"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/dashboard"
	"github.com/rtrain/rtrain/trainer"
)

type startOptions struct {
	clusterFlags
	head          bool
	withAgent     bool
	port          int
	host          string
	block         bool
	nodeIP        string
	nodeName      string
	agentPort     int
	numCPUs       float64
	numGPUs       int
	memory        string
	resources     string
	dataDir       string
	resultsDir    string
	hbInterval    time.Duration
	hbTimeout     time.Duration
	headTimeout   time.Duration
	store         string
	verbose       bool
	readyTimeout  time.Duration
	dashboardPort int
	allowStorage  []string
	maxWorkingDir string
}

func newStartCmd() *cobra.Command {
	o := &startOptions{}
	cmd := &cobra.Command{
		Use:   "start (--head | --address HEAD:PORT)",
		Short: "Start a cluster head, or a node agent that joins one",
		Long: `start runs the head of a cluster (--head) or a node agent that joins the
head at --address, in the background like ` + "`ray start`" + `; --block keeps it in
the foreground. ` + "`rtrain stop`" + ` stops it.

The head makes a cluster token when none is given and prints it once; every
agent and client must present it (--token or RTRAIN_TOKEN). Agents run the
code they are sent: never expose a head or agent port without the token.

Without --tls-cert/--tls-key the head makes its own CA (kept in the state
directory, under tls/) and serves gRPC and the dashboard over TLS; the token
it prints (rt1-...) carries the CA's fingerprint, so agents and clients that
hold it verify the head, and the head verifies agents, with nothing more.
--insecure serves plain TCP instead.
The head runs no workers itself: start an agent on its machine too if it
should, or pass --with-agent to run one in the head's process.`,
		Example: `  rtrain start --head --port 6379
  rtrain start --address 10.0.0.1:6379 --token $RTRAIN_TOKEN
  rtrain start --address 10.0.0.1:6379 --num-gpus 8 --node-ip-address 10.0.0.2
  rtrain start --address 10.0.0.1:6379 --resources '{"accelerator_type:A100": 1}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	addClusterFlags(f, &o.clusterFlags, "the head to join, "+addressForm+" for every head of a cluster with standbys")
	f.BoolVar(&o.head, "head", false, "start the head")
	f.BoolVar(&o.withAgent, "with-agent", false, "with --head: also run this machine's agent in the head's process, so one command makes a one-node cluster")
	f.IntVar(&o.port, "port", 6379, "the head's port")
	f.StringVar(&o.host, "host", "", "the address the head listens on (default: every interface)")
	f.BoolVar(&o.block, "block", false, "stay in the foreground")
	f.StringVar(&o.nodeIP, "node-ip-address", "", "this node's address, reachable from every other node (default: the one facing the head)")
	f.StringVar(&o.nodeName, "node-name", "", "this node's name (default: the host name)")
	f.IntVar(&o.agentPort, "agent-port", 0, "the agent's port (default: any free one)")
	f.Float64Var(&o.numCPUs, "num-cpus", 0, "override the CPU cores this node offers")
	f.IntVar(&o.numGPUs, "num-gpus", -1, "override the GPUs this node offers (without a driver GPU i is /dev/nvidia<i>)")
	f.StringVar(&o.resources, "resources", "", `custom resources this node offers, as JSON ('{"licence": 2}') or name=qty,...; jobs ask for them with --resources-per-worker`)
	f.StringVar(&o.memory, "memory", "", "override the memory this node offers, e.g. 64G (default: all of it)")
	f.StringVar(&o.dataDir, "data-dir", "", "the agent's working files: shipped code, logs, staged checkpoints (default: agent-data in the state directory)")
	f.StringVar(&o.resultsDir, "results-dir", "", "the head's runs: logs, and checkpoints unless a job names --storage (default ~/rtrain_results)")
	f.StringSliceVar(&o.allowStorage, "allow-storage", nil, "more directories on the head, besides --results-dir, that jobs' --storage and --resume-from may name")
	f.StringVar(&o.maxWorkingDir, "max-working-dir", "", "the largest working directory the head takes from a client, e.g. 4G (default 1G)")
	f.DurationVar(&o.hbInterval, "heartbeat-interval", cluster.DefaultHeartbeatInterval, "how often agents report to the head")
	f.DurationVar(&o.hbTimeout, "heartbeat-timeout", cluster.DefaultHeartbeatTimeout, "silence after which the head declares a node dead and fails its workers")
	f.StringVar(&o.store, "store", "", "with --head: keep the job table in etcd, etcd://HOST:2379[,HOST:2379...][/PREFIX]; heads with the same --store elect one to lead, the others stand by to take over")
	f.DurationVar(&o.headTimeout, "head-timeout", agent.DefaultHeadTimeout, "with --address: how long this node's workers go on while no head can be reached (it restarts, or a standby takes over); past it they are stopped")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log at debug level")
	f.IntVar(&o.dashboardPort, "dashboard-port", 8265, "the head's web dashboard and Prometheus /metrics, behind the token (-1: none)")
	f.DurationVar(&o.readyTimeout, "ready-timeout", 60*time.Second, "how long to wait for the background daemon to be up")
	return cmd
}

func (o *startOptions) run(cmd *cobra.Command) error {
	if o.head == (o.address != "") {
		return usageError{errors.New("give --head to start a head, or --address HEAD:PORT to join one")}
	}
	if o.memory != "" {
		if _, err := parseBytes(o.memory); err != nil {
			return usageError{fmt.Errorf("--memory %q: %w", o.memory, err)}
		}
	}
	if o.maxWorkingDir != "" {
		if _, err := parseBytes(o.maxWorkingDir); err != nil {
			return usageError{fmt.Errorf("--max-working-dir %q: %w", o.maxWorkingDir, err)}
		}
	}
	if !o.head && (len(o.allowStorage) > 0 || o.maxWorkingDir != "") {
		return usageError{errors.New("--allow-storage and --max-working-dir set what the head accepts: give them to `rtrain start --head`")}
	}
	if _, err := sched.ParseCustom(o.resources); err != nil {
		return usageError{fmt.Errorf("--resources: %w", err)}
	}
	if o.head && o.resources != "" {
		return usageError{errors.New("--resources is what an agent's node offers; the head runs no workers: give it to `rtrain start --address`")}
	}
	if o.head && o.insecure && (o.tlsCert != "" || o.tlsKey != "" || o.tlsCA != "") {
		return usageError{errors.New("--insecure serves plain TCP, but --tls-cert/--tls-key/--tls-ca ask for TLS: give one or the other")}
	}
	if !o.head {
		if err := o.checkTransport(o.security(), o.address); err != nil {
			return err
		}
	}
	dir, err := o.dir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	role := o.role()
	if pid, ok := livePid(filepath.Join(dir, role+".pid")); ok {
		article := "a"
		if !o.head {
			article = "an"
		}
		return usageError{fmt.Errorf("%s %s already runs here (pid %d); `rtrain stop` stops it", article, role, pid)}
	}
	if !o.block {
		return o.daemonize(cmd, dir)
	}
	return o.serve(cmd, dir)
}

func (o *startOptions) role() string {
	if o.head {
		return "head"
	}
	return "agent"
}

// daemonize starts this command again with --block in a new session,
// output to a log file, and returns once it says it is up.
func (o *startOptions) daemonize(cmd *cobra.Command, dir string) error {
	role := o.role()
	logPath := filepath.Join(dir, role+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	defer logFile.Close()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find rtrain's own binary: %w", err)
	}
	// The token goes through the environment, not the daemon's command
	// line, which every user of the machine can read in /proc.
	args := append([]string{"start", "--block", "--state-dir", dir}, withoutFlag(os.Args[2:], "--token")...)
	c := exec.Command(self, args...)
	c.Stdout, c.Stderr = logFile, logFile
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	token := o.security().Token
	if o.head && o.token == "" && os.Getenv(auth.TokenEnv) == "" {
		// The token is made here so that it can be printed once, below.
		token = auth.NewToken()
		o.token = token
	}
	c.Env = append(os.Environ(), auth.TokenEnv+"="+token, readyFDEnv+"=3")
	// The daemon says it is up on a pipe (its fd 3): the message arrives
	// as it is written, and EOF without one means it died first.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start the %s: %w", role, err)
	}
	defer pr.Close()
	c.ExtraFiles = []*os.File{pw}
	err = c.Start()
	_ = pw.Close()
	if err != nil {
		return fmt.Errorf("start the %s: %w", role, err)
	}
	up := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(pr)
		up <- b
	}()
	select {
	case b := <-up:
		if len(b) == 0 {
			err := c.Wait()
			return fmt.Errorf("the %s exited at start (%v): %s", role, err, lastLogLine(logPath))
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "rtrain: %s started (pid %d); log: %s\n", role, c.Process.Pid, logPath)
		fmt.Fprint(out, string(b))
		return c.Process.Release()
	case <-time.After(o.readyTimeout):
		// A daemon left retrying after `rtrain start` said it failed would
		// join later, unseen, or hold the pid file against the next try.
		stopDaemon(c, up)
		return fmt.Errorf("the %s was not up after %s and was stopped: %s; see %s", role, o.readyTimeout, lastLogLine(logPath), logPath)
	}
}

// stopDaemon ends a daemon that did not come up: SIGTERM, then SIGKILL if
// it has not exited within a few seconds. up, the ready pipe's reader,
// ends once the daemon is gone and is drained here.
func stopDaemon(c *exec.Cmd, up <-chan []byte) {
	exited := make(chan struct{})
	go func() {
		_ = c.Wait()
		<-up
		close(exited)
	}()
	_ = c.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = c.Process.Kill()
		<-exited
	}
}

// readyFDEnv names the descriptor a daemon started by `rtrain start`
// announces itself on.
const readyFDEnv = "RTRAIN_READY_FD"

// announce says the daemon is up: in the ready file, for supervisors and
// scripts, and to the `rtrain start` that started it, if one did.
func announce(readyPath, msg string) error {
	if err := writeAtomic(readyPath, []byte(msg), 0o600); err != nil {
		return err
	}
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	if err != nil {
		return nil
	}
	_ = os.Unsetenv(readyFDEnv)
	f := os.NewFile(uintptr(fd), "ready")
	_, err = f.WriteString(msg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("tell rtrain start the daemon is up: %w", err)
	}
	return nil
}

// serve runs the head or agent in the foreground until a signal.
func (o *startOptions) serve(cmd *cobra.Command, dir string) error {
	ctx := cmd.Context()
	log := newDaemonLogger(o.verbose)
	role := o.role()
	pidPath := filepath.Join(dir, role+".pid")
	if err := os.WriteFile(pidPath, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	defer os.Remove(pidPath)
	readyPath := filepath.Join(dir, role+".ready")
	defer os.Remove(readyPath)
	sec := o.security()
	if o.head {
		return o.serveHead(ctx, cmd, dir, sec, readyPath, log)
	}
	if sec.Token == "" {
		return usageError{fmt.Errorf("an agent needs the cluster token: pass --token or set %s", auth.TokenEnv)}
	}
	if err := o.checkTransport(sec, o.address); err != nil {
		return err
	}
	ra, err := o.startAgent(ctx, o.address, sec, dir, log)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("rtrain: node %s joined %s; agent at %s\n", ra.NodeID, o.address, ra.Addr)
	if err := announce(readyPath, msg); err != nil {
		return err
	}
	if o.block {
		fmt.Fprint(cmd.ErrOrStderr(), msg)
	}
	return <-ra.Done()
}

// startAgent joins this machine to the head at headAddr as a node.
func (o *startOptions) startAgent(ctx context.Context, headAddr string, sec auth.Security, dir string, log *slog.Logger) (*agent.Running, error) {
	ov := discover.NoOverrides
	ov.NumCPUs, ov.NumGPUs = o.numCPUs, o.numGPUs
	custom, err := sched.ParseCustom(o.resources)
	if err != nil {
		return nil, usageError{fmt.Errorf("--resources: %w", err)}
	}
	ov.Custom = custom
	if o.memory != "" {
		n, err := parseBytes(o.memory)
		if err != nil {
			return nil, usageError{fmt.Errorf("--memory %q: %w", o.memory, err)}
		}
		ov.MemoryBytes = n
	}
	dataDir := o.dataDir
	if dataDir == "" {
		// Beside the agent's pid file: two agents with their own state
		// directories never share one.
		dataDir = filepath.Join(dir, "agent-data")
	}
	return agent.StartNode(ctx, agent.NodeConfig{Resolve: trainer.ResolvePython,
		HeadAddr: headAddr, Security: sec, NodeName: o.nodeName, NodeIP: o.nodeIP,
		Port: o.agentPort, Overrides: ov, DataDir: dataDir, HeadTimeout: o.headTimeout,
	}, log)
}

func (o *startOptions) serveHead(ctx context.Context, cmd *cobra.Command, dir string, sec auth.Security, readyPath string, log *slog.Logger) error {
	printToken := false
	if sec.Token == "" {
		sec.Token = auth.NewToken()
		printToken = true
	}
	secret, _ := auth.SplitToken(sec.Token)
	sec.Token = secret
	warning := ""
	switch {
	case o.insecure:
		if !loopbackHost(o.host) {
			warning = fmt.Sprintf("  warning: --insecure: the cluster token and all traffic cross the network in clear on %s; anyone on the path can run code on every agent\n", listenName(o.host))
			log.Warn("serving without TLS on a non-loopback address", "host", listenName(o.host))
		}
	case sec.TLSCert == "" && sec.TLSKey == "" && sec.TLSCA == "":
		ca, err := auth.LoadOrCreateCA(filepath.Join(dir, "tls"))
		if err != nil {
			return err
		}
		cert, err := ca.Issue(auth.LocalHosts(o.host))
		if err != nil {
			return err
		}
		sec.Certificate = &cert
		sec.Token = auth.JoinToken(secret, ca.Fingerprint())
	}
	var maxWorkdir int64
	if o.maxWorkingDir != "" {
		maxWorkdir, _ = parseBytes(o.maxWorkingDir) // checked in run
	}
	h, err := head.Start(ctx, head.Config{
		Addr: o.host, Port: o.port, Security: sec, ResultsDir: o.resultsDir, StateDir: dir,
		HeartbeatInterval: o.hbInterval, HeartbeatTimeout: o.hbTimeout,
		AllowedStorageRoots: o.allowStorage, MaxWorkingDir: maxWorkdir,
		Store: o.store, Advertise: headAddress(o.host, net.JoinHostPort(o.host, strconv.Itoa(o.port))),
	}, newDaemonLogger(o.verbose))
	if err != nil {
		return err
	}
	// A head that lost its leadership exits without closing: closing would
	// stop its jobs, whose workers the new leader has adopted. One stopped
	// by a signal hands its jobs off for the next head to adopt, unless
	// the workers' agent is this process's and goes with it (one machine:
	// stopping it all ends the jobs).
	deposed := false
	defer func() {
		switch {
		case deposed:
		case !o.withAgent && ctx.Err() != nil:
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			h.HandOff(hctx)
			cancel()
		default:
			h.Close()
		}
	}()
	dashURL := ""
	if o.dashboardPort >= 0 {
		stop, url, err := serveDashboard(ctx, h, sec, o.host, o.dashboardPort, log)
		if err != nil {
			return err
		}
		defer stop()
		dashURL = url
	}
	// The local CLI finds the head and its token here; 0600 keeps the
	// token to this user.
	if err := writeAtomic(filepath.Join(dir, "token"), []byte(sec.Token+"\n"), 0o600); err != nil {
		return err
	}
	addr := headAddress(o.host, h.Addr().String())
	if err := writeAtomic(filepath.Join(dir, "head.addr"), []byte(addr+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(dir, "head.addr"))
	msg := fmt.Sprintf("rtrain: head at %s\n  join with: rtrain start --address %s --token TOKEN\n  token saved in %s\n", addr, addr, filepath.Join(dir, "token"))
	if o.withAgent {
		// Joins over the network like any agent, so the head treats this
		// node as every other.
		ra, err := o.startAgent(ctx, addr, auth.Security{Token: sec.Token, TLSCA: o.tlsCA, TLSCert: o.tlsCert, TLSKey: o.tlsKey}, dir, log)
		if err != nil {
			return err
		}
		defer func() { <-ra.Done() }()
		msg += fmt.Sprintf("  this machine is node %s (--with-agent)\n", ra.NodeID)
	}
	if sec.Certificate != nil {
		msg += "  TLS: the head's own CA, " + filepath.Join(dir, "tls", "ca.pem") + " (the token pins it)\n"
	}
	if dashURL != "" {
		msg += "  dashboard: " + dashURL + " (the token logs you in)\n"
	}
	msg += warning
	withToken := msg
	if printToken || o.token != "" || os.Getenv(auth.TokenEnv) != "" {
		withToken += "  cluster token: " + sec.Token + "\n"
	}
	// A daemon's stderr is head.log, which is no place for the token: it
	// goes to the rtrain start that waits on the ready pipe.
	daemon := os.Getenv(readyFDEnv) != ""
	if err := announce(readyPath, withToken); err != nil {
		return err
	}
	if daemon {
		fmt.Fprint(cmd.ErrOrStderr(), msg)
	} else if o.block {
		fmt.Fprint(cmd.ErrOrStderr(), withToken)
	}
	log.Info("head serving", "addr", addr)
	select {
	case <-ctx.Done():
		return nil
	case err := <-h.Lost():
		deposed = true
		return standAgain{err}
	}
}

// headAddress is the address to give agents: the listen address, or this
// machine's outward one when the head listens everywhere.
func headAddress(host, listen string) string {
	_, port, _ := strings.Cut(listen, "]:")
	if port == "" {
		port = listen[strings.LastIndex(listen, ":")+1:]
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		return host + ":" + port
	}
	if ip := outwardIP(); ip != "" {
		return ip + ":" + port
	}
	return "127.0.0.1:" + port
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

func livePid(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}

func lastLogLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// serveDashboard serves the head's dashboard and /metrics until stop,
// over TLS with the head's certificate when it has one.
func serveDashboard(ctx context.Context, h *head.Daemon, sec auth.Security, host string, port int, log *slog.Logger) (stop func(), url string, err error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, "", fmt.Errorf("dashboard: %w (pick another --dashboard-port, or -1 for none)", err)
	}
	// Cancelling the base context ends the event requests that wait for
	// news, so Shutdown does not wait for them.
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	secret, _ := auth.SplitToken(sec.Token)
	srv := &http.Server{Handler: dashboard.New(h, secret, log), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return dctx }}
	scheme := "http://"
	if sec.Certificate != nil {
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*sec.Certificate}})
		scheme = "https://"
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	stop = func() {
		cancel()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
		<-done
	}
	return stop, scheme + headAddress(host, ln.Addr().String()), nil
}

// loopbackHost reports whether a head listening on host is reachable
// only from this machine.
func loopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func listenName(host string) string {
	if host == "" {
		return "every interface"
	}
	return host
}

// withoutFlag is args less flag and its value ("--flag v" or "--flag=v").
func withoutFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == flag:
			i++
		case strings.HasPrefix(args[i], flag+"="):
		default:
			out = append(out, args[i])
		}
	}
	return out
}

// standAgain is the end of a head that lost its leadership: its process
// starts over (main execs it again), as a standby, with nothing of what it
// was doing: it must not act once another head leads.
type standAgain struct{ err error }

func (e standAgain) Error() string { return e.err.Error() }
func (e standAgain) Unwrap() error { return e.err }
