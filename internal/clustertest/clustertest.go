// Package clustertest starts a whole cluster in the test's process: a head
// and node agents on 127.0.0.1, as `rtrain start` runs them, with no root
// and no network namespaces (etcd's integration.NewCluster). It sits below
// the netns end-to-end tests: fast, for the gRPC seams between head,
// agents and clients.
package clustertest

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/agent"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/head"
	"github.com/rtrain/rtrain/trainer"
)

// Agent is one node of a Cluster.
type Agent struct {
	// Name is the node's name; empty: node-<i>.
	Name string
	// CPUs it offers; 0: 2.
	CPUs float64
	// NVML, when set, is the library its GPUs are found and sampled
	// through (go-nvml's mock); nil: none, a CPU node.
	NVML nvml.Interface
}

// Cluster is a running head and its agents.
type Cluster struct {
	Head     *head.Daemon
	Agents   []*agent.Running
	Security auth.Security
}

// HeartbeatInterval is how often the agents of a Cluster beat.
const HeartbeatInterval = 100 * time.Millisecond

// New starts a head and the agents, each joined, and stops them all when
// the test ends.
func New(t testing.TB, agents ...Agent) *Cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	sec := auth.Security{Token: auth.NewToken()}
	h, err := head.Start(ctx, head.Config{
		Addr: "127.0.0.1", Security: sec, ResultsDir: t.TempDir(), StateDir: t.TempDir(),
		HeartbeatInterval: HeartbeatInterval, HeartbeatTimeout: 20 * HeartbeatInterval,
	}, log)
	require.NoError(t, err)
	c := &Cluster{Head: h, Security: sec}
	t.Cleanup(func() {
		cancel()
		for _, a := range c.Agents {
			<-a.Done()
		}
		h.Close()
	})
	for i, a := range agents {
		if a.Name == "" {
			a.Name = fmt.Sprintf("node-%d", i+1)
		}
		if a.CPUs == 0 {
			a.CPUs = 2
		}
		lib := a.NVML
		o := discover.NoOverrides
		o.NumCPUs = a.CPUs
		if lib == nil {
			o.NumGPUs = 0
		}
		ra, err := agent.StartNode(ctx, agent.NodeConfig{Resolve: trainer.ResolvePython,
			HeadAddr: h.Addr().String(), Security: sec, NodeName: a.Name, NodeIP: "127.0.0.1",
			Overrides: o, DataDir: t.TempDir(), NVML: lib,
		}, log)
		require.NoError(t, err)
		c.Agents = append(c.Agents, ra)
	}
	return c
}

// Client is a client of the head, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *trainer.Client {
	t.Helper()
	cl, err := trainer.Dial(c.Head.Addr().String(), c.Security)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}
