package head

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/checkpoint/stage"
	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/launcher"
)

// RemoteAgent is a node's agent reached over gRPC by the head.
type RemoteAgent struct {
	node   sched.Node
	client clusterpb.AgentClient
	// dead is closed when the head declares the node dead; lost declares
	// it dead at once, when its agent can no longer be reached.
	dead    <-chan struct{}
	lost    func(why string)
	deadWhy func() (why string, drained bool)
	log     *slog.Logger

	// calls are the calls whose answers nobody waits for (a stop, a
	// release of staged files): the agent owns them, and Close waits.
	mu     sync.Mutex
	closed bool
	calls  sync.WaitGroup
}

// async makes call f in a goroutine the agent owns; after Close, none.
func (r *RemoteAgent) async(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.calls.Go(f)
}

// Close waits for the calls in flight and refuses new ones.
func (r *RemoteAgent) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.calls.Wait()
}

// NewRemoteAgent is the agent of node reached through client; dead closes
// when the node is declared dead.
func NewRemoteAgent(node sched.Node, client clusterpb.AgentClient, dead <-chan struct{}, log *slog.Logger) *RemoteAgent {
	return &RemoteAgent{node: node, client: client, dead: dead, log: log}
}

// unreachable reports whether err says the agent is gone (it cannot be
// reached, or the head declared its node dead meanwhile), and if so
// declares its node dead and returns the error as ErrNodeLost.
func (r *RemoteAgent) unreachable(what string, err error) (error, bool) {
	select {
	case <-r.dead:
		why := fmt.Sprintf("node %s lost", r.node.ID)
		if r.deadWhy != nil {
			why, _ = r.deadWhy()
		}
		return cluster.NodeLost(why + " while trying to " + what), true
	default:
	}
	if status.Code(err) != codes.Unavailable {
		return nil, false
	}
	why := fmt.Sprintf("node %s lost: its agent at %s cannot be reached (%s)", r.node.ID, r.node.AgentAddr, status.Convert(err).Message())
	if r.lost != nil {
		r.lost(why)
		// Declared dead, its workers are lost once they are fenced: not
		// before, or their ranks would start elsewhere beside them.
		<-r.dead
	}
	return cluster.NodeLost(why + " while trying to " + what), true
}

// stopStale stops the node's group of job's attempt, which no head follows.
func (r *RemoteAgent) stopStale(job string, attempt int) {
	r.async(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := r.client.StopGroup(ctx, &clusterpb.StopGroupRequest{JobId: job, Attempt: int32(attempt)}); err != nil {
			r.log.Debug("stop a group no head follows", "node", r.node.ID, "job", job, "err", err)
		}
	})
}

// Node implements NodeAgent.
func (r *RemoteAgent) Node() sched.Node { return r.node }

// Rendezvous implements NodeAgent.
func (r *RemoteAgent) Rendezvous(ctx context.Context, req cluster.RendezvousRequest) (cluster.Rendezvous, error) {
	ctx, cancel := cluster.UntilClosed(ctx, r.dead)
	defer cancel()
	rep, err := r.client.Rendezvous(ctx, &clusterpb.RendezvousRequest{JobId: req.JobID, TorchVersion: req.TorchVersion, Python: req.Python})
	if err != nil {
		if lost, ok := r.unreachable("rendezvous", err); ok {
			return cluster.Rendezvous{}, lost
		}
		return cluster.Rendezvous{}, auth.CallError("node "+r.node.ID, err)
	}
	return cluster.Rendezvous{Port: int(rep.Port), AgentStore: rep.AgentStore}, nil
}

// StartGroup implements NodeAgent: it sends the checkpoint to resume from,
// starts the group and relays its events, fetching each reported
// checkpoint's files into spec.Stager before passing the report on.
func (r *RemoteAgent) StartGroup(ctx context.Context, spec cluster.GroupSpec, ship cluster.Shipment) (cluster.GroupRunner, error) {
	who := "node " + r.node.ID
	if spec.Restore != nil {
		pctx, cancel := cluster.UntilClosed(ctx, r.dead)
		err := r.putRestore(pctx, spec.JobID, spec.Restore.Dir)
		cancel()
		if err != nil {
			if lost, ok := r.unreachable("send the checkpoint to resume from", err); ok {
				return nil, lost
			}
			return nil, auth.CallError(who+": send the checkpoint to resume from", err)
		}
	}
	body, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// The stream lives as long as the group; Stop and ctx reach the group
	// through StopGroup, so its exits still come back on the stream. Until
	// the group has started, ctx and the node's death end the wait.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	started := make(chan struct{})
	var wait sync.WaitGroup
	defer wait.Wait()
	defer close(started)
	wait.Go(func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-r.dead:
			cancel()
		case <-started:
		}
	})
	stream, err := r.client.StartGroup(sctx)
	if err == nil {
		if err = sendGroup(stream, body, ship); errors.Is(err, io.EOF) {
			err = nil // the agent ended the call: Recv says why
		}
	}
	if err != nil {
		cancel()
		if lost, ok := r.unreachable("start the workers", err); ok {
			return nil, lost
		}
		return nil, auth.CallError(who, err)
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		if lost, ok := r.unreachable("start the workers", err); ok {
			return nil, lost
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("the agent ended the group before it started")
		}
		return nil, auth.CallError(who, err)
	}
	g := r.newGroup(spec, cancel, 0)
	go g.pump(ctx, stream, first)
	return g, nil
}

func (r *RemoteAgent) newGroup(spec cluster.GroupSpec, cancel context.CancelFunc, replayed int64) *remoteGroup {
	return &remoteGroup{
		r: r, spec: spec, cancel: cancel, replayed: replayed,
		events: make(chan cluster.Event, 256), stopCh: make(chan struct{}),
		exited: map[int]bool{},
	}
}

// AttachGroup implements cluster.GroupAttacher: it follows a group that
// an earlier head started, reading its events from seq from on.
func (r *RemoteAgent) AttachGroup(ctx context.Context, spec cluster.GroupSpec, from, replayed int64) (cluster.GroupRunner, error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stream, err := r.client.AttachGroup(sctx, &clusterpb.AttachGroupRequest{JobId: spec.JobID, Attempt: int32(spec.Layout.RestartCount), From: from})
	var first *clusterpb.GroupEvent
	if err == nil {
		// The agent answers at once: with the first event, or NotFound.
		first, err = stream.Recv()
	}
	if err != nil {
		cancel()
		if status.Code(err) == codes.NotFound {
			return nil, &cluster.GroupGoneError{Why: status.Convert(err).Message()}
		}
		if lost, ok := r.unreachable("follow the workers again", err); ok {
			return nil, lost
		}
		if errors.Is(err, io.EOF) {
			// Ended, every event read already.
			g := r.newGroup(spec, cancel, replayed)
			close(g.events)
			return g, nil
		}
		return nil, auth.CallError("node "+r.node.ID, err)
	}
	g := r.newGroup(spec, cancel, replayed)
	go g.pump(ctx, stream, first)
	return g, nil
}

// sendGroup sends the group's spec, then the working directory's archive,
// and closes the sending side.
func sendGroup(stream clusterpb.Agent_StartGroupClient, spec []byte, ship cluster.Shipment) error {
	hdr := &clusterpb.StartGroupHeader{SpecJson: spec, Python: ship.Python, Workdir: ship.Workdir.Manifest}
	if err := stream.Send(&clusterpb.StartGroupRequest{Group: hdr}); err != nil {
		return err
	}
	f, err := os.Open(ship.Workdir.Path)
	if err != nil {
		return fmt.Errorf("cluster: the working directory's archive: %w", err)
	}
	defer f.Close()
	err = cluster.SendArchive(f, func(chunk []byte) error {
		return stream.Send(&clusterpb.StartGroupRequest{WorkdirChunk: chunk})
	})
	if err != nil {
		return err
	}
	return stream.CloseSend()
}

func (r *RemoteAgent) putRestore(ctx context.Context, jobID, dir string) error {
	stream, err := r.client.PutRestore(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&clusterpb.FileChunk{JobId: jobID}); err != nil {
		return err
	}
	if err := cluster.SendTree(stream, dir); err != nil {
		return err
	}
	_, err = stream.CloseAndRecv()
	return err
}

type remoteGroup struct {
	r      *RemoteAgent
	spec   cluster.GroupSpec
	cancel context.CancelFunc
	events chan cluster.Event

	stopOnce sync.Once
	stopCh   chan struct{}

	// replayed: the events before this seq were seen by an earlier head.
	replayed int64

	// Touched by pump only.
	exited map[int]bool
	// seq is the last event's; acked what the agent was last told.
	seq, acked int64
}

// ackEvery is how often the head tells an agent which of a group's events
// it has: the log lines before the seq of the tick before, which the job
// table has kept by then, so an agent drops only what a head taking over
// would not ask for again.
const ackEvery = 5 * time.Second

// ReleaseStaged implements cluster.StagedReleaser: the node's copy of a
// report's files goes once its checkpoint is committed, not before, so a
// head that takes over meanwhile still finds them.
func (g *remoteGroup) ReleaseStaged(seq int) {
	g.r.async(func() { g.releaseStaged(seq) })
}

func (g *remoteGroup) Events() <-chan cluster.Event { return g.events }

// Stop asks the agent to stop the group; the exits arrive as events.
func (g *remoteGroup) Stop() {
	g.stopOnce.Do(func() {
		close(g.stopCh)
		g.r.async(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := g.r.client.StopGroup(ctx, &clusterpb.StopGroupRequest{JobId: g.spec.JobID, Attempt: int32(g.spec.Layout.RestartCount)}); err != nil {
				g.r.log.Debug("stop group", "node", g.r.node.ID, "err", err)
			}
		})
	})
}

// DumpStacks implements GroupRunner.
func (g *remoteGroup) DumpStacks() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.r.client.DumpStacks(ctx, &clusterpb.StopGroupRequest{JobId: g.spec.JobID, Attempt: int32(g.spec.Layout.RestartCount)}); err != nil {
		g.r.log.Debug("dump stacks", "node", g.r.node.ID, "err", err)
	}
}

type groupStream interface {
	Recv() (*clusterpb.GroupEvent, error)
}

// pump relays the agent's events until the stream ends. A stream that
// breaks, or a node declared dead, ends every worker not yet ended there
// as lost, so the job never waits on a node that is gone.
func (g *remoteGroup) pump(ctx context.Context, stream groupStream, first *clusterpb.GroupEvent) {
	defer close(g.events)
	defer g.cancel()
	recv := make(chan *clusterpb.GroupEvent)
	recvErr := make(chan error, 1)
	go func() {
		defer close(recv)
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			recv <- m
		}
	}()
	if first != nil && !g.relay(ctx, first) {
		return
	}
	done := ctx.Done()
	ack := time.NewTicker(ackEvery)
	defer ack.Stop()
	var before int64
	for {
		select {
		case <-ack.C:
			if before > g.acked {
				seq := before
				g.acked = seq
				g.r.async(func() { g.ack(seq) })
			}
			before = g.seq + 1
		case <-done:
			done = nil
			g.Stop()
		case <-g.r.dead:
			g.cancel()
			for range recv { // the reader ends with the cancelled stream
			}
			why, drained := fmt.Sprintf("node %s lost", g.r.node.ID), false
			if g.r.deadWhy != nil {
				why, drained = g.r.deadWhy()
			}
			g.loseAs(why, drained)
			return
		case m, ok := <-recv:
			if !ok {
				if err := <-recvErr; !errors.Is(err, io.EOF) {
					why := fmt.Sprintf("node %s lost: the connection to its agent broke (%s)", g.r.node.ID, status.Convert(err).Message())
					drained := false
					if g.r.lost != nil {
						g.r.lost(why)
						// A node drained a moment before keeps that reason.
						why, drained = g.r.deadWhy()
					}
					g.loseAs(why, drained)
				}
				return
			}
			if !g.relay(ctx, m) {
				g.cancel()
				for range recv {
				}
				g.lose(fmt.Sprintf("node %s: event stream broken", g.r.node.ID))
				return
			}
		}
	}
}

// relay decodes one event, fetches a reported checkpoint's files, and
// passes the event on.
func (g *remoteGroup) relay(ctx context.Context, m *clusterpb.GroupEvent) bool {
	var e cluster.Event
	if err := json.Unmarshal(m.EventJson, &e); err != nil {
		g.r.log.Error("undecodable group event", "node", g.r.node.ID, "err", err)
		return false
	}
	e.Seq, e.Replayed, e.StagedReleased = m.Seq, m.Seq < g.replayed, m.StagedReleased
	g.seq = max(g.seq, m.Seq)
	switch e.Kind {
	case cluster.WorkerExited:
		g.exited[e.Rank] = true
	case cluster.WorkerReport:
		if e.Staged != "" && !e.StagedReleased {
			dir, err := g.fetch(ctx, e.Report.Seq, e.Files)
			if err != nil {
				// The checkpoint would be committed without this rank's
				// files: the job stops rather than store half of it.
				select {
				case <-g.stopCh:
					g.r.log.Debug("fetch checkpoint files cut short by the stop", "node", g.r.node.ID, "err", err)
				default:
					g.events <- cluster.Event{Kind: cluster.CheckpointLost, NodeID: g.r.node.ID, Rank: e.Rank, Time: time.Now(), Report: e.Report,
						Line: fmt.Sprintf("rank %d's checkpoint files of report %d could not be fetched from node %s: %v", e.Rank, e.Report.Seq, g.r.node.ID, err)}
				}
				g.Stop()
				return true
			}
			e.Staged = dir
		}
	}
	g.events <- e
	return true
}

func (g *remoteGroup) fetch(ctx context.Context, seq int, files []string) (string, error) {
	if g.spec.Stager == nil {
		return "", stage.ErrNoStorage
	}
	ctx, cancel := cluster.UntilClosed(ctx, g.stopCh)
	defer cancel()
	dir, err := g.spec.Stager.Receive(ctx, seq)
	if err != nil {
		return "", err
	}
	stream, err := g.r.client.FetchStaged(ctx, &clusterpb.FetchStagedRequest{JobId: g.spec.JobID, Seq: int64(seq), Files: files})
	if err != nil {
		return "", err
	}
	if err := cluster.ReceiveFiles(dir, nil, stream.Recv); err != nil {
		return "", err
	}
	return dir, nil
}

// ack tells the agent the head has the group's events before seq.
func (g *remoteGroup) ack(seq int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.r.client.AckGroup(ctx, &clusterpb.AckGroupRequest{JobId: g.spec.JobID, Attempt: int32(g.spec.Layout.RestartCount), Seq: seq}); err != nil {
		g.r.log.Debug("ack group events", "node", g.r.node.ID, "seq", seq, "err", err)
	}
}

// releaseStaged frees the node's copy of a report once every rank there
// has made it and its files are here.
func (g *remoteGroup) releaseStaged(seq int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.r.client.ReleaseStaged(ctx, &clusterpb.FetchStagedRequest{JobId: g.spec.JobID, Seq: int64(seq)}); err != nil {
		g.r.log.Debug("release staged checkpoint", "node", g.r.node.ID, "seq", seq, "err", err)
	}
}

// lose ends every worker of the group that has not ended, as lost with its
// node.
func (g *remoteGroup) lose(why string) { g.loseAs(why, false) }

// loseAs is lose; preempted marks the exits of a drained node's workers.
func (g *remoteGroup) loseAs(why string, preempted bool) {
	now := time.Now()
	for _, w := range g.spec.Workers {
		rank := g.spec.Layout.Rank(g.spec.NodeRank, w.LocalRank)
		if g.exited[rank] {
			continue
		}
		g.exited[rank] = true
		g.events <- cluster.Event{Kind: cluster.WorkerExited, NodeID: g.r.node.ID, Rank: rank, Time: now,
			Exit: launcher.Exit{Code: -1, Time: now, Lost: why, Preempted: preempted}, Tail: []string{why}}
	}
}

var (
	_ cluster.NodeAgent      = (*RemoteAgent)(nil)
	_ cluster.GroupAttacher  = (*RemoteAgent)(nil)
	_ cluster.StagedReleaser = (*remoteGroup)(nil)
)
