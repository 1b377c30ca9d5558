package cluster

import (
	"fmt"
	"log/slog"
)

// LocalNodeID names the embedded node.
const LocalNodeID = "local"

// Local is the embedded single-node cluster: a head and one agent in this
// process, as `ray.init()` starts with no address.
type Local struct {
	Head  *Head
	Agent *Agent
}

// NewLocal starts the embedded cluster on this machine.
func NewLocal(node Node, shimDir string, log *slog.Logger) (*Local, error) {
	if node.ID == "" {
		node.ID = LocalNodeID
	}
	if node.Addr == "" {
		node.Addr = "127.0.0.1"
	}
	h := NewHead()
	if err := h.AddNode(node); err != nil {
		return nil, fmt.Errorf("cluster: embedded head: %w", err)
	}
	return &Local{Head: h, Agent: NewAgent(node, shimDir, log)}, nil
}
