package head

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/internal/version"
	"github.com/rtrain/rtrain/launcher"
)

// Registry is the head's side of the cluster: it registers node agents,
// follows their heartbeats, declares silent ones dead, and hands the job
// coordinator the scheduler and the agents. Its gRPC methods are the node
// half of clusterpb.HeadServer; the job half comes from whoever embeds it
// (the Daemon), or answers Unimplemented (RegisterWithoutJobs).
type Registry struct {
	sched    *sched.Scheduler
	sec      auth.Security
	log      *slog.Logger
	interval time.Duration
	timeout  time.Duration

	mu      sync.RWMutex
	members map[string]*member
	// joined is closed and replaced whenever a node registers.
	joined chan struct{}

	stop chan struct{}
	wg   sync.WaitGroup
	// afterMu orders after's start of a goroutine before Close's wait.
	afterMu sync.Mutex

	// Keep says whether a group an agent still runs as it registers, the
	// job's attempt on node, is one the head follows or will adopt; the
	// agent stops the others. Nil keeps none. Set before serving.
	Keep func(node, job string, attempt int) bool
}

type member struct {
	node  sched.Node
	conn  *grpc.ClientConn
	agent *RemoteAgent
	dead  chan struct{}
	// last is the time of the last heartbeat, in Unix nanoseconds; written
	// without the lock, so 10,000 agents beating stay cheap.
	last atomic.Int64
	gone bool // declared dead; under mu
	why  string
	// drained: taken out with notice; its workers were preempted.
	drained bool
	// gpus is the GPU use from the last heartbeat.
	gpus atomic.Pointer[[]*clusterpb.GPUStat]
	// timeout is the lease its agent renews with each heartbeat.
	timeout time.Duration
}

// fenced is when every worker of m's agent is certainly dead without it:
// the agent's lease runs the timeout from before its last heartbeat that
// got here, and the reapers need LeaseSlack to notice and kill.
func (m *member) fenced() time.Time {
	return time.Unix(0, m.last.Load()).Add(m.timeout + launcher.LeaseSlack)
}

// Options tune a Registry; zero values take the defaults.
type Options struct {
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
}

// NewRegistry starts following heartbeats; Close stops it.
func NewRegistry(s *sched.Scheduler, sec auth.Security, o Options, log *slog.Logger) *Registry {
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = cluster.DefaultHeartbeatInterval
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = cluster.DefaultHeartbeatTimeout
	}
	h := &Registry{
		sched: s, sec: sec, log: log,
		interval: o.HeartbeatInterval, timeout: o.HeartbeatTimeout,
		members: map[string]*member{}, joined: make(chan struct{}), stop: make(chan struct{}),
	}
	h.wg.Go(h.watch)
	return h
}

// Scheduler is the head's placement-group scheduler.
func (h *Registry) Scheduler() *sched.Scheduler { return h.sched }

// Close stops following heartbeats and closes the connections to agents.
func (h *Registry) Close() {
	h.afterMu.Lock()
	select {
	case <-h.stop:
		h.afterMu.Unlock()
		return
	default:
	}
	close(h.stop)
	h.afterMu.Unlock()
	h.wg.Wait()
	h.mu.Lock()
	var agents []*RemoteAgent
	for _, m := range h.members {
		if m.conn != nil {
			_ = m.conn.Close()
		}
		agents = append(agents, m.agent)
	}
	h.mu.Unlock()
	for _, a := range agents {
		a.Close()
	}
}

// after calls f once d has passed, or at once when the registry closes, in
// a goroutine Close waits for.
func (h *Registry) after(d time.Duration, f func()) {
	h.afterMu.Lock()
	defer h.afterMu.Unlock()
	select {
	case <-h.stop:
		f()
		return
	default:
	}
	h.wg.Go(func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-h.stop:
		}
		f()
	})
}

// Agent is the agent of a live node.
func (h *Registry) Agent(id string) (cluster.NodeAgent, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	m := h.members[id]
	if m == nil || m.gone {
		return nil, false
	}
	return m.agent, true
}

// Joined is closed when the next node registers.
func (h *Registry) Joined() <-chan struct{} {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.joined
}

// Register implements clusterpb.HeadServer.
func (h *Registry) Register(_ context.Context, req *clusterpb.RegisterRequest) (*clusterpb.RegisterReply, error) {
	n := cluster.NodeFromProto(req.Node)
	if n.ID == "" || n.Addr == "" || n.AgentAddr == "" {
		return nil, status.Error(codes.InvalidArgument, "a node registers with its id, address and agent address")
	}
	if net.ParseIP(n.Addr) == nil {
		return nil, status.Errorf(codes.InvalidArgument, "node address %q is not an IP address; pass --node-ip-address", n.Addr)
	}
	if req.Node.GetTotal() != nil {
		if _, err := sched.CustomOf(req.Node.Total.Custom); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%v; fix --resources", err)
		}
	}
	sec := h.sec
	switch {
	case req.CertSha256 != "":
		sec.Pin = req.CertSha256
	case sec.PinnedFingerprint() != "" && sec.TLSCA == "":
		// The head would pin its own CA on an agent that serves plain TCP
		// or another CA's certificate: every call to it would fail later.
		return nil, status.Error(codes.FailedPrecondition, "this cluster uses the head's own TLS: join with the token `rtrain start --head` printed (rt1-...), not --insecure or a bare secret")
	}
	conn, err := sec.Dial(n.AgentAddr)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// A node that registers again keeps the id it had, which a head that
	// restarted does not know yet; one that restarts keeps its name as id;
	// another node with the same name (hosts cloned from one image) gets a
	// suffix.
	if req.NodeId != "" {
		if old := h.members[req.NodeId]; old == nil || old.gone || old.node.AgentAddr == n.AgentAddr {
			n.ID = req.NodeId
		}
	}
	base := n.ID
	for i := 2; ; i++ {
		old := h.members[n.ID]
		if old == nil || old.gone || old.node.AgentAddr == n.AgentAddr {
			break
		}
		n.ID = base + "-" + strconv.Itoa(i)
	}
	if old := h.members[n.ID]; old != nil {
		h.declareDead(old, fmt.Sprintf("node %s lost: its agent registered again", old.node.ID))
		delete(h.members, n.ID)
	}
	if err := h.sched.AddNode(n); err != nil {
		_ = conn.Close()
		return nil, status.Errorf(codes.AlreadyExists, "%v", err)
	}
	m := &member{node: n, conn: conn, dead: make(chan struct{}), timeout: h.timeout}
	m.agent = &RemoteAgent{node: n, client: clusterpb.NewAgentClient(conn), dead: m.dead, log: h.log,
		lost: func(why string) { h.nodeLost(m, why) },
		deadWhy: func() (string, bool) {
			h.mu.RLock()
			defer h.mu.RUnlock()
			return m.why, m.drained
		}}
	m.last.Store(time.Now().UnixNano())
	h.members[n.ID] = m
	close(h.joined)
	h.joined = make(chan struct{})
	h.log.Info("node joined", "node", n.ID, "addr", n.Addr, "cpus", n.Total.CPU, "gpus", n.Total.GPU, "memory", text.Bytes(n.Total.MemoryBytes), "custom", n.Total.Custom, "groups", len(req.Groups))
	rep := &clusterpb.RegisterReply{NodeId: n.ID, HeartbeatIntervalMs: h.interval.Milliseconds(), HeartbeatTimeoutMs: h.timeout.Milliseconds()}
	if h.Keep != nil {
		for _, g := range req.Groups {
			if h.Keep(n.ID, g.JobId, int(g.Attempt)) {
				rep.Keep = append(rep.Keep, g)
			}
		}
	}
	return rep, nil
}

// Heartbeat implements clusterpb.HeadServer.
func (h *Registry) Heartbeat(_ context.Context, req *clusterpb.HeartbeatRequest) (*clusterpb.HeartbeatReply, error) {
	h.mu.RLock()
	m := h.members[req.NodeId]
	gone := m == nil || m.gone || (req.AgentAddr != "" && req.AgentAddr != m.node.AgentAddr)
	if !gone {
		m.last.Store(time.Now().UnixNano())
		// Every beat replaces the stats: none means NVML had none to give
		// (it stopped answering), not that the last ones still hold.
		m.gpus.Store(&req.Gpus)
	}
	// A drained node stays out until its agent starts again.
	drained := m != nil && m.drained && req.AgentAddr == m.node.AgentAddr
	var peers []string
	if !gone {
		for id, p := range h.members {
			if id != req.NodeId && !p.gone {
				peers = append(peers, p.node.AgentAddr)
				if len(peers) == maxPeers {
					break
				}
			}
		}
	}
	h.mu.RUnlock()
	return &clusterpb.HeartbeatReply{Reregister: gone && !drained, Peers: peers}, nil
}

// maxPeers bounds the other agents a heartbeat reply names.
const maxPeers = 8

// watch declares dead every node silent past the timeout.
func (h *Registry) watch() {
	period := max(h.timeout/10, 10*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			deadline := now.Add(-h.timeout).UnixNano()
			h.mu.Lock()
			for _, m := range h.members {
				if !m.gone && m.last.Load() < deadline {
					h.declareDead(m, fmt.Sprintf("node %s lost: no heartbeat for %s", m.node.ID, h.timeout))
				}
			}
			h.mu.Unlock()
		}
	}
}

// Drain implements clusterpb.HeadServer.
func (h *Registry) Drain(_ context.Context, req *clusterpb.DrainRequest) (*clusterpb.DrainReply, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.members[req.NodeId]
	if m == nil {
		return nil, status.Errorf(codes.NotFound, "no node %q in this cluster; `rtrain status` lists them", req.NodeId)
	}
	why := req.Reason
	if why == "" {
		why = "drained"
	}
	if !m.gone {
		m.drained = true
		h.declareDead(m, fmt.Sprintf("node %s %s", m.node.ID, why))
	}
	return &clusterpb.DrainReply{}, nil
}

// nodeLost declares m dead at once: its agent's connection broke, which a
// heartbeat would only confirm later. A node that is in fact alive learns
// it at its next heartbeat, stops its workers and registers again.
func (h *Registry) nodeLost(m *member, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.declareDead(m, why)
}

// declareDead takes the node out of scheduling and fails its workers.
// h.mu must be held.
func (h *Registry) declareDead(m *member, why string) {
	if m.gone {
		return
	}
	m.gone, m.why = true, why
	jobs := h.sched.RemoveNode(m.node.ID)
	h.log.Warn("node dead", "node", m.node.ID, "addr", m.node.Addr, "why", why, "jobs", jobs)
	// Its workers are lost (and their ranks placed elsewhere) only once
	// their lease has certainly run out: until then a frozen or cut-off
	// agent's workers may still run. A drained node stopped its own.
	if wait := time.Until(m.fenced()); !m.drained && wait > 0 {
		h.log.Info("waiting for the node's workers to be fenced before moving them", "node", m.node.ID, "wait", wait.Round(time.Millisecond))
		h.after(wait, func() { close(m.dead) })
	} else {
		close(m.dead)
	}
	// The connection goes when its streams have noticed.
	conn := m.conn
	h.after(h.timeout, func() { _ = conn.Close() })
}

// Status implements clusterpb.HeadServer's node half; the job half fills
// the jobs.
func (h *Registry) Status(context.Context, *clusterpb.StatusRequest) (*clusterpb.StatusReply, error) {
	return h.StatusReply(), nil
}

// StatusReply is the cluster's nodes as Status reports them.
func (h *Registry) StatusReply() *clusterpb.StatusReply {
	free := map[string]sched.NodeState{}
	for _, n := range h.sched.Nodes() {
		free[n.ID] = n
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	rep := &clusterpb.StatusReply{Version: version.Version, HeartbeatTimeoutMs: h.timeout.Milliseconds()}
	now := time.Now().UnixNano()
	for _, m := range h.members {
		ns := &clusterpb.NodeStatus{Node: cluster.NodeToProto(m.node), State: "alive", HeartbeatAgeMs: (now - m.last.Load()) / 1e6}
		if m.gone {
			ns.State = "dead"
		}
		if m.drained {
			ns.State = "drained"
		}
		if g := m.gpus.Load(); g != nil && !m.gone {
			ns.GpuStats = *g
		}
		if f, ok := free[m.node.ID]; ok {
			ns.Free = cluster.ResourcesToProto(f.Free)
			for _, g := range f.FreeGPUs {
				ns.FreeGpus = append(ns.FreeGpus, int32(g))
			}
		}
		rep.Nodes = append(rep.Nodes, ns)
	}
	sort.Slice(rep.Nodes, func(a, b int) bool { return rep.Nodes[a].Node.Id < rep.Nodes[b].Node.Id })
	return rep
}
