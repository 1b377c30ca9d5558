package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"google.golang.org/grpc"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/launcher"
)

// Config is a node agent that joins a cluster.
type Config struct {
	// HeadAddr is the head's host:port.
	HeadAddr string
	Security auth.Security
	// Node is what this node offers; its Addr is where the agent listens
	// and what other nodes reach it at.
	Node sched.Node
	// Port is the agent service's port; 0 picks a free one.
	Port int
	// DataDir keeps working directories, logs and staged checkpoints.
	DataDir string
	// ShimDir holds the Python package rtrain (pyshim.Install).
	ShimDir string
	// Resolve finds python on this node.
	Resolve PythonResolver
	// NVML is the library GPU use is sampled from for heartbeats; nil is
	// the system's.
	NVML nvml.Interface
	// HeadTimeout is how long the node's workers go on while no head can
	// be reached but other nodes can (the head restarts, or a standby is
	// taking over): a head that comes back in time adopts them. Past it,
	// or at once when the node reaches nobody, they are stopped. 0 means
	// DefaultHeadTimeout; negative stops them at the heartbeat timeout.
	HeadTimeout time.Duration
}

// DefaultHeadTimeout is Config.HeadTimeout's default.
const DefaultHeadTimeout = 3 * time.Minute

// Running is an agent serving and registered with its head.
type Running struct {
	// Addr is where the agent service listens.
	Addr string
	// NodeID is the id the head gave the node.
	NodeID string
	done   chan error
}

// Done delivers the agent's end: nil when its context ended.
func (r *Running) Done() <-chan error { return r.done }

// Start serves the agent and registers it with the head. It returns
// once registered, or with the reason it cannot be: a wrong token or
// version is final; a head not reachable yet is retried until ctx ends.
// The agent runs until ctx ends, then stops its groups and returns.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Running, error) {
	lock, err := lockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	// The lock is held: whatever is staged there, a dead agent left.
	if removed, err := sweepStaged(cfg.DataDir); err != nil {
		log.Warn("sweep staged checkpoints left by an earlier agent", "err", err)
	} else if len(removed) > 0 {
		log.Info("removed staged checkpoints left by an earlier agent", "jobs", len(removed))
	}
	ra, err := startAgent(ctx, cfg, lock, log)
	if err != nil {
		lock.unlock()
	}
	return ra, err
}

// startAgent is Start once the data directory is locked; the agent
// lets go of the lock when it ends.
func startAgent(ctx context.Context, cfg Config, lock *dirLock, log *slog.Logger) (*Running, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(cfg.Node.Addr, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("cluster: agent listen on %s: %w", cfg.Node.Addr, err)
	}
	certSHA := ""
	if sec := cfg.Security; sec.PinnedFingerprint() != "" && sec.TLSCert == "" && sec.Certificate == nil {
		// A cluster on the head's own CA: the agent serves a certificate
		// of its own and registers its fingerprint over the verified
		// channel to the head, which then pins it.
		cert, fp, err := auth.SelfSigned(auth.LocalHosts(cfg.Node.Addr))
		if err != nil {
			_ = ln.Close()
			return nil, err
		}
		cfg.Security.Certificate, certSHA = &cert, fp
	}
	opts, err := cfg.Security.ServerOptions()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	node := cfg.Node
	node.AgentAddr = ln.Addr().String()
	SweepCgroups(ctx, log)
	agent := New(node, cfg.ShimDir, log)
	// Renewed by every heartbeat that gets through: a worker of an agent
	// that froze or was cut off dies by the time the head gives its rank
	// to another node.
	lease := launcher.NewLease(filepath.Join(cfg.DataDir, "lease"))
	agent.lease = lease.Path()
	svc := NewService(agent, cfg.DataDir, cfg.Resolve, log)
	switch {
	case cfg.HeadTimeout == 0:
		svc.headTimeout = DefaultHeadTimeout
	case cfg.HeadTimeout > 0:
		svc.headTimeout = cfg.HeadTimeout
	}
	srv := grpc.NewServer(opts...)
	svc.Register(srv)

	hs, err := dialHeads(cfg.Security, cfg.HeadAddr)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	stopAll := func() {
		// Stop refuses new calls and ends the open group streams; the
		// groups were stopped before.
		srv.Stop()
		hs.close()
	}
	id, beats, err := register(ctx, hs, node, certSHA, lease, nil, log)
	if err != nil {
		_ = ln.Close()
		hs.close()
		return nil, err
	}
	_, at := hs.client()
	log.Info("agent registered", "node", id, "head", at, "agent", node.AgentAddr)
	ra := &Running{Addr: node.AgentAddr, NodeID: id, done: make(chan error, 1)}
	node.ID = id
	// Served once it has its name, so that no group starts under another:
	// the head's first calls wait in the listener's queue until then.
	agent.rename(id)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	go func() {
		lib := cfg.NVML
		if lib == nil {
			lib = nvml.New()
		}
		gpus := discover.OpenGPUMonitor(lib)
		id, err := beat(ctx, hs, node, certSHA, lease, beats, svc, gpus, log)
		gpus.Close()
		if ctx.Err() != nil {
			head, _ := hs.client()
			// Stopped with notice: the head moves this node's workers
			// elsewhere without counting a failure against their jobs.
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, derr := head.Drain(dctx, &clusterpb.DrainRequest{NodeId: id, Reason: "drained: its agent was stopped"}); derr != nil {
				log.Warn("drain", "err", auth.CallError("drain", derr))
			}
			cancel()
		}
		// The workers get their grace period and their files are cleaned
		// up before the agent goes: its end would otherwise kill them
		// outright and leave their cgroups behind.
		svc.StopAll("the agent is stopping")
		wctx, cancel := context.WithTimeout(context.Background(), groupGoneTimeout)
		if werr := svc.Wait(wctx); werr != nil {
			log.Warn("workers still stopping as the agent exits", "err", werr)
		}
		cancel()
		stopAll()
		agent.Close()
		if serr := <-serveErr; err == nil && serr != nil && !errors.Is(serr, grpc.ErrServerStopped) {
			err = serr
		}
		lock.unlock()
		ra.done <- err
	}()
	return ra, nil
}

// beats are the head's heartbeat settings.
type beats struct{ interval, timeout time.Duration }

// register joins the head, retrying while it cannot be reached. A node
// that registers again names its old id and the groups it still runs
// (svc, nil at first); it stops those the head does not keep.
func register(ctx context.Context, hs *heads, node sched.Node, certSHA string, lease *launcher.Lease, svc *Service, log *slog.Logger) (string, beats, error) {
	warned := false
	for {
		from := launcher.LeaseNow()
		req := &clusterpb.RegisterRequest{Node: cluster.NodeToProto(node), CertSha256: certSHA, NodeId: node.ID}
		if svc != nil {
			req.Groups = svc.Running()
		}
		head, at := hs.client()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rep, err := head.Register(cctx, req)
		cancel()
		if err == nil {
			b := beats{time.Duration(rep.HeartbeatIntervalMs) * time.Millisecond, time.Duration(rep.HeartbeatTimeoutMs) * time.Millisecond}
			if b.interval <= 0 {
				b.interval = cluster.DefaultHeartbeatInterval
			}
			if b.timeout <= 0 {
				b.timeout = cluster.DefaultHeartbeatTimeout
			}
			if svc != nil {
				svc.Keep(rep.Keep, "the head at "+at+" no longer follows them")
				if len(rep.Keep) > 0 {
					log.Info("the head adopts the workers that outlived its outage", "groups", len(rep.Keep))
				}
			}
			renew(lease, from, b.timeout, log)
			return rep.NodeId, b, nil
		}
		err = auth.CallError("register with the head at "+at, err)
		if errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrVersionMismatch) {
			return "", beats{}, err
		}
		hs.next()
		if !warned {
			log.Warn("head not reachable yet; retrying", "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return "", beats{}, fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// beat sends heartbeats until ctx ends, registering again when the head
// asks (it restarted, another took over, or it declared this node dead).
// While no heartbeat gets through, the workers go on for the head timeout
// if the node still reaches other nodes (the head is down, not this node
// cut off), renewing their lease itself; past that, or when it reaches
// nobody, it stops them once the head's heartbeat timeout has passed, as
// the head then fails them: a partitioned node must not train on.
func beat(ctx context.Context, hs *heads, node sched.Node, certSHA string, lease *launcher.Lease, b beats, svc *Service, gpus *discover.GPUMonitor, log *slog.Logger) (nodeID string, err error) {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	lastOK := time.Now()
	failing, fenced, holding := false, false, false
	var peers []string
	for {
		select {
		case <-ctx.Done():
			return node.ID, nil
		case <-t.C:
		}
		from := launcher.LeaseNow()
		head, at := hs.client()
		cctx, cancel := context.WithTimeout(ctx, b.interval*3)
		rep, err := head.Heartbeat(cctx, &clusterpb.HeartbeatRequest{NodeId: node.ID, AgentAddr: node.AgentAddr, Gpus: gpuStatsToProto(gpus.Sample())})
		cancel()
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return node.ID, nil
			}
			if !failing {
				log.Warn("heartbeat failed", "head", at, "err", auth.CallError("heartbeat", err))
			}
			failing = true
			hs.next()
			if fenced {
				break
			}
			down := time.Since(lastOK)
			// Renewed before the last heartbeat's lease runs out, not
			// after: the reapers would fence the workers in between.
			if svc.headTimeout > 0 && down < svc.headTimeout && (len(peers) == 0 || reachable(peers, b.interval)) {
				if !holding && down > b.timeout {
					log.Warn("no head reachable; the workers go on while a head comes back", "for", svc.headTimeout)
					holding = true
				}
				renew(lease, from, b.timeout, log)
				break
			}
			if down <= b.timeout {
				break // the lease from the last heartbeat still runs
			}
			why := fmt.Sprintf("no heartbeat reached the head for %s and no other node answers: this node is cut off", b.timeout)
			if holding {
				why = fmt.Sprintf("no head came back within the head timeout (%s)", svc.headTimeout)
			}
			svc.StopAll(why)
			fenced = true
		case rep.Reregister:
			log.Warn("the head does not know this node; registering again", "head", at)
			if fenced {
				// Registering renews the lease, which would let workers
				// still in their grace period outlive the head's move of
				// their ranks.
				wctx, wcancel := context.WithTimeout(ctx, groupGoneTimeout)
				if werr := svc.Wait(wctx); werr != nil {
					log.Warn("workers still stopping as the agent registers again", "err", werr)
				}
				wcancel()
			}
			id, nb, err := register(ctx, hs, node, certSHA, lease, svc, log)
			if err != nil {
				return node.ID, err
			}
			node.ID, b = id, nb
			svc.agent.rename(id)
			t.Reset(b.interval)
			lastOK, failing, fenced, holding = time.Now(), false, false, false
		default:
			renew(lease, from, b.timeout, log)
			if failing {
				log.Info("heartbeat back", "head", at)
			}
			peers = rep.Peers
			lastOK, failing, fenced, holding = time.Now(), false, false, false
		}
	}
}

// renew extends the workers' lease to the head's timeout from when the
// heartbeat that earned it was sent: the head counts the same timeout from
// when it got it, later, so the lease always ends first.
func renew(lease *launcher.Lease, from, timeout time.Duration, log *slog.Logger) {
	if err := lease.Renew(from, timeout); err != nil {
		// The workers' reapers keep the last deadline and fence them.
		log.Error("renew the workers' lease", "err", err)
	}
}

func gpuStatsToProto(stats []discover.GPUStat) []*clusterpb.GPUStat {
	out := make([]*clusterpb.GPUStat, len(stats))
	for i, s := range stats {
		out[i] = &clusterpb.GPUStat{Index: int32(s.Index), Utilization: s.Utilization, MemoryUsedBytes: s.MemoryUsed, MemoryTotalBytes: s.MemoryTotal}
	}
	return out
}
