package discover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/rtrain/rtrain/cluster/sched"
)

// NVIDIAMajor is the character-device major number of NVIDIA GPU nodes.
const NVIDIAMajor = 195

// Overrides replace what discovery finds, like `ray start --num-cpus`.
type Overrides struct {
	// NumCPUs replaces the core count when > 0.
	NumCPUs float64
	// NumGPUs replaces the GPU count when >= 0; -1 keeps discovery's. The
	// first NumGPUs discovered GPUs are kept; past those (with no driver),
	// GPU i is taken to be /dev/nvidia<i>.
	NumGPUs int
	// MemoryBytes replaces the memory size when > 0.
	MemoryBytes int64
	// Custom are the node's custom resources, which discovery never finds.
	Custom sched.Custom
}

// NoOverrides keeps everything discovery finds.
var NoOverrides = Overrides{NumGPUs: -1}

// Node describes this machine: its cores, memory and GPUs, with
// the overrides applied. It asks the system's NVML (libnvidia-ml.so.1) for
// the GPUs; devDir is where device nodes live ("/dev"), where it looks
// when NVML is not available.
func Node(ctx context.Context, log *slog.Logger, devDir string, o Overrides) (sched.Node, error) {
	return NodeWith(ctx, log, nvml.New(), devDir, o)
}

// NodeWith is Node asking lib for the GPUs; a nil lib
// skips NVML and takes the GPUs from the device nodes. When NVML is not
// available, or fails to list the GPUs, it logs one line and falls back to
// the device nodes: those tell GPU count and minor numbers, not names,
// memory or NVLink.
func NodeWith(ctx context.Context, log *slog.Logger, lib nvml.Interface, devDir string, o Overrides) (sched.Node, error) {
	n := sched.Node{Total: sched.Resources{CPU: float64(runtime.NumCPU())}}
	mem, err := memTotal()
	if err != nil {
		return sched.Node{}, err
	}
	n.Total.MemoryBytes = mem
	if n.GPUs, err = discoverGPUs(ctx, log, lib, devDir); err != nil {
		return sched.Node{}, err
	}
	if o.NumCPUs > 0 {
		n.Total.CPU = o.NumCPUs
	}
	if o.MemoryBytes > 0 {
		n.Total.MemoryBytes = o.MemoryBytes
	}
	if o.NumGPUs >= 0 {
		gpus := make([]sched.GPU, o.NumGPUs)
		for i := range gpus {
			gpus[i] = sched.GPU{Index: i, Minor: i}
			if i < len(n.GPUs) {
				gpus[i] = n.GPUs[i]
			}
		}
		// A peer the override cut off is no longer this node's GPU.
		for i := range gpus {
			peers := slices.DeleteFunc(slices.Clone(gpus[i].NVLinkPeers), func(p int) bool { return p >= len(gpus) })
			gpus[i].NVLinkPeers = slices.Clip(peers)
			if len(peers) == 0 {
				gpus[i].NVLinkPeers = nil
			}
		}
		n.GPUs = gpus
	}
	n.Total.GPU = len(n.GPUs)
	n.Total.Custom = o.Custom
	return n, nil
}

// discoverGPUs asks NVML, else the device nodes. It fails only when ctx
// ends.
func discoverGPUs(ctx context.Context, log *slog.Logger, lib nvml.Interface, devDir string) ([]sched.GPU, error) {
	if lib == nil {
		return DeviceGPUs(devDir), nil
	}
	info, err := QueryNVML(ctx, log, lib)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("cluster: discover GPUs: %w", context.Cause(ctx))
	}
	if err != nil {
		gpus := DeviceGPUs(devDir)
		level := slog.LevelWarn
		if errors.Is(err, ErrNVMLUnavailable) {
			level = slog.LevelInfo // a machine without GPUs, or a driver-less container
		}
		log.Log(ctx, level, "gpus from device nodes: nvml not usable", "err", err, "dev", devDir, "gpus", len(gpus))
		return gpus, nil
	}
	log.InfoContext(ctx, "gpus from nvml", "driver", info.DriverVersion, "gpus", len(info.GPUs))
	return info.GPUs, nil
}

var nvidiaNode = regexp.MustCompile(`^nvidia([0-9]+)$`)

// DeviceGPUs lists /dev/nvidia<N> character devices, ordered by minor
// number. It is the fallback when NVML is not available: without the
// driver's library it finds what the driver created.
func DeviceGPUs(devDir string) []sched.GPU {
	entries, err := os.ReadDir(devDir)
	if err != nil {
		return nil
	}
	var gpus []sched.GPU
	for _, e := range entries {
		if !nvidiaNode.MatchString(e.Name()) {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(devDir, e.Name()), &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR {
			continue
		}
		if major(st.Rdev) != NVIDIAMajor {
			continue
		}
		gpus = append(gpus, sched.GPU{Minor: int(minor(st.Rdev))})
	}
	sort.Slice(gpus, func(i, j int) bool { return gpus[i].Minor < gpus[j].Minor })
	for i := range gpus {
		gpus[i].Index = i
	}
	return gpus
}

func major(dev uint64) uint64 { return (dev >> 8) & 0xfff }
func minor(dev uint64) uint64 { return (dev & 0xff) | ((dev >> 12) & 0xfff00) }

func memTotal() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("cluster: read memory size: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cluster: parse MemTotal: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("cluster: no MemTotal in /proc/meminfo")
}
