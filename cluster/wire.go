package cluster

import (
	"errors"
	"time"

	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/sched"
)

// Heartbeat defaults: agents beat every second; a node silent for five is
// declared dead.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultHeartbeatTimeout  = 5 * time.Second
)

// ErrNodeLost is wrapped by the errors of calls to an agent that cannot be
// reached: its node is declared dead, and its workers are lost.
var ErrNodeLost = errors.New("cluster: node lost")

// nodeLostError prints as the reason alone and matches ErrNodeLost.
type nodeLostError struct{ why string }

func (e *nodeLostError) Error() string        { return e.why }
func (e *nodeLostError) Is(target error) bool { return target == ErrNodeLost }

// NodeLost is an error that prints as why and matches ErrNodeLost.
func NodeLost(why string) error { return &nodeLostError{why: why} }

// ResourcesToProto is the wire form of an amount of resources.
func ResourcesToProto(r sched.Resources) *clusterpb.Resources {
	return &clusterpb.Resources{Cpu: r.CPU, Gpu: int32(r.GPU), MemoryBytes: r.MemoryBytes, Custom: r.Custom.Map()}
}

// ResourcesFromProto converts the wire form of an amount of resources.
func ResourcesFromProto(r *clusterpb.Resources) sched.Resources {
	if r == nil {
		return sched.Resources{}
	}
	// Register refuses invalid custom resources; anywhere else they cannot
	// come from rtrain, and are left out.
	custom, _ := sched.CustomOf(r.Custom)
	return sched.Resources{CPU: r.Cpu, GPU: int(r.Gpu), MemoryBytes: r.MemoryBytes, Custom: custom}
}

// NodeToProto is the wire form of a node.
func NodeToProto(n sched.Node) *clusterpb.Node {
	p := &clusterpb.Node{Id: n.ID, Addr: n.Addr, Total: ResourcesToProto(n.Total), AgentAddr: n.AgentAddr, Iface: n.Iface, Hostname: n.Hostname}
	for _, g := range n.GPUs {
		pg := &clusterpb.GPU{Index: int32(g.Index), Minor: int32(g.Minor), Uuid: g.UUID, Name: g.Name, MemoryBytes: g.MemoryBytes}
		for _, peer := range g.NVLinkPeers {
			pg.NvlinkPeers = append(pg.NvlinkPeers, int32(peer))
		}
		p.Gpus = append(p.Gpus, pg)
	}
	return p
}

// NodeFromProto converts the wire form of a node.
func NodeFromProto(p *clusterpb.Node) sched.Node {
	if p == nil {
		return sched.Node{}
	}
	n := sched.Node{ID: p.Id, Addr: p.Addr, Total: ResourcesFromProto(p.Total), AgentAddr: p.AgentAddr, Iface: p.Iface, Hostname: p.Hostname}
	for _, g := range p.Gpus {
		gpu := sched.GPU{Index: int(g.Index), Minor: int(g.Minor), UUID: g.Uuid, Name: g.Name, MemoryBytes: g.MemoryBytes}
		for _, peer := range g.NvlinkPeers {
			gpu.NVLinkPeers = append(gpu.NVLinkPeers, int(peer))
		}
		n.GPUs = append(n.GPUs, gpu)
	}
	return n
}
