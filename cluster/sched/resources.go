package sched

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rtrain/rtrain/internal/text"
)

// Resources is an amount of a node's resources. CPU is in cores and may be
// fractional, as in Ray.
type Resources struct {
	CPU         float64 `json:"cpu"`
	GPU         int     `json:"gpu"`
	MemoryBytes int64   `json:"memory_bytes"`
	// Custom are the node's or bundle's custom resources.
	Custom Custom `json:"custom,omitempty"`
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	r.add(o, 1)
	return r
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	r.add(o, -1)
	return r
}

// add is r += k*o in place. The scheduler takes and gives back resources
// with it on every placement: custom resources, which cost a parse, are
// only touched when o has some.
func (r *Resources) add(o Resources, k int) {
	r.CPU += float64(k) * o.CPU
	r.GPU += k * o.GPU
	r.MemoryBytes += int64(k) * o.MemoryBytes
	if o.Custom != "" {
		r.Custom = r.Custom.plus(o.Custom, float64(k))
	}
}

// Scale returns r times n.
func (r Resources) Scale(n int) Resources {
	var s Resources
	s.add(r, n)
	return s
}

// Fits reports whether r fits in free. A tiny tolerance keeps sums of
// fractional CPUs (0.1 * 10) from failing on rounding.
func (r Resources) Fits(free Resources) bool {
	return r.CPU <= free.CPU+1e-9 && r.GPU <= free.GPU && r.MemoryBytes <= free.MemoryBytes && r.Custom.fits(free.Custom)
}

// String is the amount as a person reads it: "{CPU: 2, GPU: 1}".
func (r Resources) String() string {
	parts := []string{"CPU: " + strconv.FormatFloat(r.CPU, 'g', -1, 64)}
	if r.GPU > 0 {
		parts = append(parts, fmt.Sprintf("GPU: %d", r.GPU))
	}
	if r.MemoryBytes > 0 {
		parts = append(parts, "memory: "+text.Bytes(r.MemoryBytes))
	}
	r.Custom.each(func(name string, q float64) bool {
		parts = append(parts, name+": "+strconv.FormatFloat(q, 'g', -1, 64))
		return true
	})
	return "{" + strings.Join(parts, ", ") + "}"
}

// GPU is one GPU of a node.
type GPU struct {
	// Index is the CUDA/NVML index on its node, the value that goes into
	// CUDA_VISIBLE_DEVICES.
	Index int `json:"index"`
	// Minor is the device node's minor number (/dev/nvidia<Minor>).
	Minor int `json:"minor"`
	// UUID and Name are known when discovered through NVML.
	UUID string `json:"uuid,omitempty"`
	Name string `json:"name,omitempty"`
	// MemoryBytes is the GPU's total memory, 0 when unknown (no NVML, or
	// NVML cannot say, as on GPUs that share the host's memory).
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// PCIBusID is the GPU's PCI address as sysfs writes it
	// ("0000:07:00.0"), empty without NVML.
	PCIBusID string `json:"pci_bus_id,omitempty"`
	// NVLinkPeers are the indices of this node's GPUs that this one reaches
	// over an active NVLink, directly or through an NVSwitch, in ascending
	// order. Empty without NVML or without NVLink.
	NVLinkPeers []int `json:"nvlink_peers,omitempty"`
}

// Node is what a node offers.
type Node struct {
	ID string `json:"id"`
	// Addr is the address other nodes reach this one at; rank 0's node's
	// address becomes MASTER_ADDR.
	Addr string `json:"addr"`
	// Iface is the network interface that carries Addr; empty for the
	// embedded node, whose workers talk over loopback.
	Iface string `json:"iface,omitempty"`
	// AgentAddr is host:port of the node's agent service; empty for the
	// embedded node.
	AgentAddr string    `json:"agent_addr,omitempty"`
	Hostname  string    `json:"hostname"`
	Total     Resources `json:"total"`
	GPUs      []GPU     `json:"gpus,omitempty"`
}
