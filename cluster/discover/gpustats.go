package discover

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// GPUStat is one GPU's use at a moment, as an agent samples it for the
// head's metrics.
type GPUStat struct {
	Index int `json:"index"`
	// Utilization is the fraction of the last sample period the GPU was
	// busy, 0 to 1; -1 when NVML cannot say.
	Utilization float64 `json:"utilization"`
	MemoryUsed  int64   `json:"memory_used_bytes"`
	MemoryTotal int64   `json:"memory_total_bytes"`
}

// GPUMonitor samples a node's GPUs through NVML, which it holds
// initialised from OpenGPUMonitor to Close.
type GPUMonitor struct {
	lib  nvml.Interface
	devs []nvml.Device
}

// OpenGPUMonitor initialises lib and finds its GPUs. When Init fails it
// returns nil and makes no other NVML call (go-nvml kills the process on
// a call into a library that did not load); a nil monitor samples nothing.
func OpenGPUMonitor(lib nvml.Interface) *GPUMonitor {
	if lib.Init() != nvml.SUCCESS {
		return nil
	}
	m := &GPUMonitor{lib: lib}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		_ = lib.Shutdown()
		return nil
	}
	for i := range n {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			_ = lib.Shutdown()
			return nil
		}
		m.devs = append(m.devs, d)
	}
	return m
}

// Sample reads every GPU's utilisation and memory.
func (m *GPUMonitor) Sample() []GPUStat {
	if m == nil {
		return nil
	}
	out := make([]GPUStat, len(m.devs))
	for i, d := range m.devs {
		s := GPUStat{Index: i, Utilization: -1}
		if u, ret := d.GetUtilizationRates(); ret == nvml.SUCCESS {
			s.Utilization = float64(u.Gpu) / 100
		}
		if mem, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
			s.MemoryUsed, s.MemoryTotal = int64(mem.Used), int64(mem.Total)
		}
		out[i] = s
	}
	return out
}

// Close shuts NVML down.
func (m *GPUMonitor) Close() {
	if m != nil {
		_ = m.lib.Shutdown()
	}
}
