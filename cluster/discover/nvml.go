package discover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/rtrain/rtrain/cluster/sched"
)

// ErrNVMLUnavailable is wrapped when NVML cannot be initialised: no
// libnvidia-ml.so.1, no driver loaded, or no permission. Discovery then
// falls back to the device nodes.
var ErrNVMLUnavailable = errors.New("cluster: NVML not available")

// NVMLInfo is what NVML says about this machine.
type NVMLInfo struct {
	// DriverVersion is the NVIDIA driver's version ("550.54.15"); empty
	// when NVML does not say.
	DriverVersion string
	// GPUs are in NVML's order, which is PCI bus order, with Index set to
	// the position: the CUDA index under CUDA_DEVICE_ORDER=PCI_BUS_ID.
	GPUs []sched.GPU
}

// nvlinkRemoteTypeSymbol is the one function discovery uses that older
// drivers lack; go-nvml crashes the process when called on a missing
// symbol, so it is looked up first.
const nvlinkRemoteTypeSymbol = "nvmlDeviceGetNvLinkRemoteDeviceType"

// QueryNVML initialises lib, lists its GPUs and shuts it down again.
// When Init fails it makes no other call, not even Shutdown: go-nvml
// kills the process when a function of a library that did not load is
// called. The error is then an *NVMLInitError, which matches
// ErrNVMLUnavailable. Production code passes nvml.New(); tests pass
// go-nvml's mocks.
//
// What a GPU needs to be used (minor number, UUID, name, PCI address) must
// be readable, or QueryNVML fails; memory size and NVLink are left empty
// where NVML does not support them, with a debug log line.
func QueryNVML(ctx context.Context, log *slog.Logger, lib nvml.Interface) (info NVMLInfo, err error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return NVMLInfo{}, &NVMLInitError{Return: ret, msg: ret.Error()}
	}
	defer func() {
		if ret := lib.Shutdown(); ret != nvml.SUCCESS {
			log.WarnContext(ctx, "nvml shutdown failed", "err", ret.Error())
		}
	}()
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		info.DriverVersion = v
	} else {
		log.DebugContext(ctx, "nvml: no driver version", "err", ret.Error())
	}
	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return NVMLInfo{}, fmt.Errorf("cluster: nvml: count GPUs: %w", ret)
	}
	remoteType := lib.Extensions().LookupSymbol(nvlinkRemoteTypeSymbol) == nil
	links := make([]gpuLinks, count)
	for i := range count {
		if err := ctx.Err(); err != nil {
			return NVMLInfo{}, fmt.Errorf("cluster: nvml: %w", err)
		}
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return NVMLInfo{}, fmt.Errorf("cluster: nvml: GPU %d: %w", i, ret)
		}
		g, err := nvmlGPU(ctx, log, i, d)
		if err != nil {
			return NVMLInfo{}, err
		}
		info.GPUs = append(info.GPUs, g)
		links[i] = nvlinks(ctx, log, i, d, remoteType)
	}
	setNVLinkPeers(info.GPUs, links)
	return info, nil
}

// nvmlGPU reads what rtrain keeps of one GPU.
func nvmlGPU(ctx context.Context, log *slog.Logger, i int, d nvml.Device) (sched.GPU, error) {
	g := sched.GPU{Index: i}
	fail := func(what string, ret nvml.Return) (sched.GPU, error) {
		return sched.GPU{}, fmt.Errorf("cluster: nvml: GPU %d: %s: %w", i, what, ret)
	}
	var ret nvml.Return
	if g.Minor, ret = d.GetMinorNumber(); ret != nvml.SUCCESS {
		return fail("minor number", ret)
	}
	if g.UUID, ret = d.GetUUID(); ret != nvml.SUCCESS {
		return fail("UUID", ret)
	}
	if g.Name, ret = d.GetName(); ret != nvml.SUCCESS {
		return fail("name", ret)
	}
	pci, ret := d.GetPciInfo()
	if ret != nvml.SUCCESS {
		return fail("PCI info", ret)
	}
	g.PCIBusID = pciBusID(pci)
	switch mem, ret := d.GetMemoryInfo(); ret {
	case nvml.SUCCESS:
		g.MemoryBytes = int64(mem.Total)
	case nvml.ERROR_NOT_SUPPORTED:
		log.DebugContext(ctx, "nvml: memory size not supported", "gpu", i)
	default:
		return fail("memory info", ret)
	}
	return g, nil
}

// gpuLinks is what one GPU's active NVLinks reach.
type gpuLinks struct {
	// buses are the PCI addresses at the far end of links to GPUs.
	buses []string
	// switched is set when a link goes to an NVSwitch, which joins the
	// GPU to every other GPU on the switches (HGX, DGX): NVML then reports
	// the switch's PCI address, not a GPU's.
	switched bool
}

// nvlinks walks one GPU's links until NVML says there are no more. A GPU
// without NVLink answers ERROR_NOT_SUPPORTED; past its last link NVML
// answers ERROR_INVALID_ARGUMENT.
func nvlinks(ctx context.Context, log *slog.Logger, i int, d nvml.Device, remoteType bool) gpuLinks {
	var l gpuLinks
	for link := range nvml.NVLINK_MAX_LINKS {
		state, ret := d.GetNvLinkState(link)
		if ret != nvml.SUCCESS {
			if ret != nvml.ERROR_NOT_SUPPORTED && ret != nvml.ERROR_INVALID_ARGUMENT {
				log.DebugContext(ctx, "nvml: nvlink state", "gpu", i, "link", link, "err", ret.Error())
			}
			break
		}
		if state != nvml.FEATURE_ENABLED {
			continue
		}
		if remoteType {
			t, ret := d.GetNvLinkRemoteDeviceType(link)
			if ret == nvml.SUCCESS && t == nvml.NVLINK_DEVICE_TYPE_SWITCH {
				l.switched = true
				continue
			}
		}
		pci, ret := d.GetNvLinkRemotePciInfo(link)
		if ret != nvml.SUCCESS {
			log.DebugContext(ctx, "nvml: nvlink remote PCI info", "gpu", i, "link", link, "err", ret.Error())
			continue
		}
		if bus := pciBusID(pci); bus != "" {
			l.buses = append(l.buses, bus)
		}
	}
	return l
}

// setNVLinkPeers turns each GPU's links into the indices of its peers. A
// link to a PCI address that is no GPU of this node (a bridge, an NPU) is
// no peer.
func setNVLinkPeers(gpus []sched.GPU, links []gpuLinks) {
	byBus := make(map[string]int, len(gpus))
	for _, g := range gpus {
		if g.PCIBusID != "" {
			byBus[g.PCIBusID] = g.Index
		}
	}
	for i := range gpus {
		var peers []int
		for _, bus := range links[i].buses {
			if j, ok := byBus[bus]; ok && j != i {
				peers = append(peers, j)
			}
		}
		if links[i].switched {
			for j := range gpus {
				if j != i && links[j].switched {
					peers = append(peers, j)
				}
			}
		}
		slices.Sort(peers)
		gpus[i].NVLinkPeers = slices.Compact(peers)
	}
}

// pciBusID is the PCI address in sysfs's form, "0000:07:00.0". NVML writes
// an 8-digit domain in upper case ("00000000:07:00.0").
func pciBusID(p nvml.PciInfo) string {
	s := cString(p.BusId[:])
	if s == "" {
		s = cString(p.BusIdLegacy[:])
	}
	if s == "" {
		return ""
	}
	var domain, bus, dev, fn uint64
	if n, err := fmt.Sscanf(s, "%x:%x:%x.%x", &domain, &bus, &dev, &fn); err != nil || n != 4 {
		return strings.ToLower(s)
	}
	return fmt.Sprintf("%04x:%02x:%02x.%x", domain, bus, dev, fn)
}

// cString is a NUL-terminated C char array as a string.
func cString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

// NVMLInitError is NVML's Init failing. It matches ErrNVMLUnavailable and
// unwraps to the nvml.Return.
type NVMLInitError struct {
	Return nvml.Return
	// msg is NVML's own message, which is only readable while the library
	// is loaded.
	msg string
}

func (e *NVMLInitError) Error() string { return ErrNVMLUnavailable.Error() + ": " + e.Reason() }

// Reason says why in words, for a person: "libnvidia-ml.so.1 not found".
func (e *NVMLInitError) Reason() string {
	switch e.Return {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return "libnvidia-ml.so.1 not found"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "the NVIDIA driver is not loaded"
	case nvml.ERROR_NO_PERMISSION:
		return "no permission to open the GPUs"
	default:
		return "init failed: " + e.msg
	}
}

func (e *NVMLInitError) Is(target error) bool { return target == ErrNVMLUnavailable }
func (e *NVMLInitError) Unwrap() error        { return e.Return }
