package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/sched"
)

// LocalNodeID names the embedded node.
const LocalNodeID = "local"

// Local is the embedded single-node cluster: a head and one agent in this
// process, as `ray.init()` starts with no address. The job coordinator
// drives it through the same scheduler and NodeAgent interface as a
// cluster's head; only the network between them is missing.
type Local struct {
	head  *sched.Scheduler
	agent *Agent
}

// NewLocal starts the embedded cluster on this machine.
func NewLocal(node sched.Node, shimDir string, log *slog.Logger) (*Local, error) {
	if node.ID == "" {
		node.ID = LocalNodeID
	}
	if node.Addr == "" {
		node.Addr = "127.0.0.1"
	}
	SweepCgroups(context.Background(), log)
	h := sched.New()
	if err := h.AddNode(node); err != nil {
		return nil, fmt.Errorf("cluster: embedded head: %w", err)
	}
	return &Local{head: h, agent: New(node, shimDir, log)}, nil
}

// Scheduler is the embedded head's scheduler.
func (l *Local) Scheduler() *sched.Scheduler { return l.head }

// Agent is the embedded node's agent.
func (l *Local) Agent(id string) (cluster.NodeAgent, bool) {
	if id != l.agent.Node().ID {
		return nil, false
	}
	return l.agent, true
}

// Joined never fires: the embedded cluster has its one node.
func (l *Local) Joined() <-chan struct{} { return nil }
