package discover

import (
	"context"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/testutil"
)

func mknod(t *testing.T, path string, major, minor uint32) {
	t.Helper()
	dev := int((major << 8) | (minor & 0xff) | ((minor &^ 0xff) << 12))
	if err := syscall.Mknod(path, syscall.S_IFCHR|0o666, dev); err != nil {
		t.Fatalf("mknod %s: %v", path, err)
	}
}

func TestDiscoverFindsNvidiaDeviceNodes(t *testing.T) {
	testutil.RequireRoot(t)
	dev := t.TempDir()
	mknod(t, filepath.Join(dev, "nvidia2"), NVIDIAMajor, 2)
	mknod(t, filepath.Join(dev, "nvidia0"), NVIDIAMajor, 0)
	mknod(t, filepath.Join(dev, "nvidiactl"), NVIDIAMajor, 255) // a control device, not a GPU
	mknod(t, filepath.Join(dev, "nvidia7"), 1, 3)               // not NVIDIA's major

	// Without NVML (a nil library), the device nodes are all there is.
	n, err := NodeWith(context.Background(), slog.New(slog.DiscardHandler), nil, dev, NoOverrides)
	if err != nil {
		t.Fatal(err)
	}
	if n.Total.GPU != 2 || len(n.GPUs) != 2 {
		t.Fatalf("found %d GPUs (%+v), want 2", n.Total.GPU, n.GPUs)
	}
	for i, wantMinor := range []int{0, 2} {
		if g := n.GPUs[i]; g.Index != i || g.Minor != wantMinor {
			t.Errorf("GPU %d = %+v, want index %d minor %d", i, g, i, wantMinor)
		}
	}
	if n.Total.CPU < 1 || n.Total.MemoryBytes <= 0 {
		t.Errorf("CPU %v, memory %d: want positive", n.Total.CPU, n.Total.MemoryBytes)
	}
}

func TestDiscoverOverrides(t *testing.T) {
	dev := t.TempDir()
	n, err := NodeWith(context.Background(), slog.New(slog.DiscardHandler), nil, dev, Overrides{NumCPUs: 3.5, NumGPUs: 3, MemoryBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if n.Total.CPU != 3.5 || n.Total.GPU != 3 || n.Total.MemoryBytes != 1<<30 {
		t.Errorf("total = %v, want the overrides", n.Total)
	}
	for i, g := range n.GPUs {
		if g.Index != i || g.Minor != i {
			t.Errorf("GPU %d = %+v, want /dev/nvidia%d", i, g, i)
		}
	}
	n, err = NodeWith(context.Background(), slog.New(slog.DiscardHandler), nil, dev, Overrides{NumGPUs: 0})
	if err != nil || n.Total.GPU != 0 {
		t.Errorf("NumGPUs 0: %d GPUs, %v", n.Total.GPU, err)
	}
}

// When NVML's Init fails, the device nodes the driver created are the
// GPUs, and --num-gpus adds /dev/nvidia<i> past them.
func TestDiscoverFallsBackToDeviceNodes(t *testing.T) {
	testutil.RequireRoot(t)
	dev := t.TempDir()
	mknod(t, filepath.Join(dev, "nvidia0"), NVIDIAMajor, 0)
	mknod(t, filepath.Join(dev, "nvidia1"), NVIDIAMajor, 1)
	noDriver := func() nvml.Interface {
		return &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }}
	}

	log, logs := newLog()
	n, err := NodeWith(context.Background(), log, noDriver(), dev, NoOverrides)
	require.NoError(t, err)
	assert.Equal(t, []sched.GPU{{Index: 0, Minor: 0}, {Index: 1, Minor: 1}}, n.GPUs)
	assert.Len(t, logs.all(), 1)

	n, err = NodeWith(context.Background(), log, noDriver(), dev, Overrides{NumGPUs: 3})
	require.NoError(t, err)
	assert.Equal(t, []sched.GPU{{Index: 0, Minor: 0}, {Index: 1, Minor: 1}, {Index: 2, Minor: 2}}, n.GPUs)
}

// Discover keeps its old signature; here, with no driver, it finds the
// device nodes as it always did.
func TestDiscoverOldSignature(t *testing.T) {
	n, err := Node(t.Context(), slog.New(slog.DiscardHandler), t.TempDir(), Overrides{NumCPUs: 2, NumGPUs: 2})
	require.NoError(t, err)
	assert.Equal(t, 2.0, n.Total.CPU)
	assert.Len(t, n.GPUs, 2)
}
