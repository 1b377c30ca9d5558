package cluster

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// nvidiaMajor is the character-device major number of NVIDIA GPU nodes.
const nvidiaMajor = 195

// Overrides replace what discovery finds, like `ray start --num-cpus`.
type Overrides struct {
	// NumCPUs replaces the core count when > 0.
	NumCPUs float64
	// NumGPUs replaces the GPU count when >= 0; -1 keeps discovery's. With
	// no driver, GPU i is taken to be /dev/nvidia<i>.
	NumGPUs int
	// MemoryBytes replaces the memory size when > 0.
	MemoryBytes int64
}

// NoOverrides keeps everything discovery finds.
var NoOverrides = Overrides{NumGPUs: -1}

// Discover describes this machine: its cores, memory and GPUs, with the
// overrides applied. devDir is where device nodes live ("/dev").
func Discover(devDir string, o Overrides) (Node, error) {
	n := Node{Total: Resources{CPU: float64(runtime.NumCPU())}}
	mem, err := memTotal()
	if err != nil {
		return Node{}, err
	}
	n.Total.MemoryBytes = mem
	n.GPUs = deviceGPUs(devDir)
	if o.NumCPUs > 0 {
		n.Total.CPU = o.NumCPUs
	}
	if o.MemoryBytes > 0 {
		n.Total.MemoryBytes = o.MemoryBytes
	}
	if o.NumGPUs >= 0 {
		gpus := make([]GPU, o.NumGPUs)
		for i := range gpus {
			gpus[i] = GPU{Index: i, Minor: i}
			if i < len(n.GPUs) {
				gpus[i] = n.GPUs[i]
			}
		}
		n.GPUs = gpus
	}
	n.Total.GPU = len(n.GPUs)
	return n, nil
}

var nvidiaNode = regexp.MustCompile(`^nvidia([0-9]+)$`)

// deviceGPUs lists /dev/nvidia<N> character devices, ordered by minor
// number. It is the fallback until NVML discovery: without the driver's
// library it finds what the driver created.
func deviceGPUs(devDir string) []GPU {
	entries, err := os.ReadDir(devDir)
	if err != nil {
		return nil
	}
	var gpus []GPU
	for _, e := range entries {
		if !nvidiaNode.MatchString(e.Name()) {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(devDir, e.Name()), &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR {
			continue
		}
		if major(st.Rdev) != nvidiaMajor {
			continue
		}
		gpus = append(gpus, GPU{Minor: int(minor(st.Rdev))})
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
