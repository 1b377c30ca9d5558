package discover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/sched"
)

// logRecords is a slog handler that keeps every record, at every level.
type logRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecords) WithGroup(string) slog.Handler            { return h }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

func (h *logRecords) all() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.records)
}

func newLog() (*slog.Logger, *logRecords) {
	h := &logRecords{}
	return slog.New(h), h
}

// busID is a PCI address as NVML's C struct holds it.
func busID(s string) [32]int8 {
	var b [32]int8
	for i := range len(s) {
		b[i] = int8(s[i])
	}
	return b
}

// dgxA100 is go-nvml's DGX A100 mock with what it leaves out filled in:
// the GPUs' PCI addresses, and twelve active NVLinks per GPU, each to an
// NVSwitch, as on the real machine.
func dgxA100() *dgxa100.Server {
	s := dgxa100.New()
	for _, d := range s.Devices {
		d := d.(*dgxa100.Device)
		d.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
			return nvml.PciInfo{BusId: busID(d.PciBusID), PciDeviceId: d.Config.PciDeviceId}, nvml.SUCCESS
		}
		d.GetNvLinkStateFunc = func(link int) (nvml.EnableState, nvml.Return) {
			if link >= 12 {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		}
		d.GetNvLinkRemoteDeviceTypeFunc = func(int) (nvml.IntNvLinkDeviceType, nvml.Return) {
			return nvml.NVLINK_DEVICE_TYPE_SWITCH, nvml.SUCCESS
		}
		d.GetNvLinkRemotePciInfoFunc = func(link int) (nvml.PciInfo, nvml.Return) {
			return nvml.PciInfo{BusId: busID(fmt.Sprintf("00000000:%02X:00.0", 0xc4+link/2))}, nvml.SUCCESS
		}
	}
	return s
}

// nvmlCalls counts the calls recorded on lib, by method.
func nvmlCalls(lib *mock.Interface) map[string]int {
	calls := map[string]int{}
	v := reflect.ValueOf(lib)
	for i := range v.NumMethod() {
		m := v.Type().Method(i)
		if !strings.HasSuffix(m.Name, "Calls") || m.Type.NumIn() != 1 || m.Type.NumOut() != 1 {
			continue
		}
		if n := v.Method(i).Call(nil)[0].Len(); n > 0 {
			calls[strings.TrimSuffix(m.Name, "Calls")] = n
		}
	}
	return calls
}

func TestQueryNVMLDGXA100(t *testing.T) {
	s := dgxA100()
	log, logs := newLog()
	info, err := QueryNVML(context.Background(), log, s)
	require.NoError(t, err)
	assert.Equal(t, "550.54.15", info.DriverVersion)
	require.Len(t, info.GPUs, 8)
	for i, g := range info.GPUs {
		d := s.Devices[i].(*dgxa100.Device)
		var peers []int
		for j := range 8 {
			if j != i {
				peers = append(peers, j)
			}
		}
		want := sched.GPU{
			Index:       i,
			Minor:       i,
			UUID:        d.UUID,
			Name:        "Mock NVIDIA A100-SXM4-40GB",
			MemoryBytes: 40 << 30,
			PCIBusID:    fmt.Sprintf("0000:%02x:00.0", i),
			NVLinkPeers: peers,
		}
		if diff := cmp.Diff(want, g); diff != "" {
			t.Errorf("GPU %d (-want +got):\n%s", i, diff)
		}
		assert.True(t, strings.HasPrefix(g.UUID, "GPU-"), "UUID %q", g.UUID)
		assert.Len(t, d.GetNvLinkStateCalls(), 13, "GPU %d: links 0-11 and the one past the last", i)
		assert.Empty(t, d.GetNvLinkRemotePciInfoCalls(), "GPU %d: a switch's PCI address is no GPU's", i)
	}
	assert.Len(t, s.InitCalls(), 1)
	assert.Len(t, s.ShutdownCalls(), 1)
	assert.Empty(t, logs.all())
}

// A DGX-1-like mesh without switches: NVML names the GPU at the far end of
// each link by its PCI address.
func TestQueryNVMLDirectNVLinks(t *testing.T) {
	s := dgxA100()
	// links[i] are GPU i's links: the remote PCI address and whether the
	// link is up. GPUs 4 to 7 have no NVLink.
	type link struct {
		remote string
		up     bool
	}
	links := [][]link{
		{{"00000000:01:00.0", true}, {"00000000:01:00.0", true}, {"00000000:03:00.0", false}},
		{{"00000000:00:00.0", true}, {"00000000:00:00.0", true}},
		{{"0000:03:00.0", true}, {"00000000:FF:00.0", true}}, // FF: a bridge, no GPU
		{{"00000000:02:00.0", true}, {"00000000:00:00.0", false}},
	}
	for i, d := range s.Devices {
		d := d.(*dgxa100.Device)
		d.GetNvLinkStateFunc = func(l int) (nvml.EnableState, nvml.Return) {
			switch {
			case i >= len(links):
				return 0, nvml.ERROR_NOT_SUPPORTED
			case l >= len(links[i]):
				return 0, nvml.ERROR_INVALID_ARGUMENT
			case links[i][l].up:
				return nvml.FEATURE_ENABLED, nvml.SUCCESS
			}
			return nvml.FEATURE_DISABLED, nvml.SUCCESS
		}
		d.GetNvLinkRemotePciInfoFunc = func(l int) (nvml.PciInfo, nvml.Return) {
			return nvml.PciInfo{BusId: busID(links[i][l].remote)}, nvml.SUCCESS
		}
		// A driver older than nvmlDeviceGetNvLinkRemoteDeviceType: calling
		// it would kill the process, so the mock would panic.
		d.GetNvLinkRemoteDeviceTypeFunc = nil
	}
	s.LookupSymbolFunc = func(sym string) error {
		if sym == "nvmlDeviceGetNvLinkRemoteDeviceType" {
			return errors.New("undefined symbol")
		}
		return nil
	}

	info, err := QueryNVML(context.Background(), slog.New(slog.DiscardHandler), s)
	require.NoError(t, err)
	var got [][]int
	for _, g := range info.GPUs {
		got = append(got, g.NVLinkPeers)
	}
	want := [][]int{{1}, {0}, {3}, {2}, nil, nil, nil, nil}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NVLink peers by GPU (-want +got):\n%s", diff)
	}
}

func TestDiscoverNodeWithoutNVML(t *testing.T) {
	for _, ret := range []nvml.Return{nvml.ERROR_LIBRARY_NOT_FOUND, nvml.ERROR_DRIVER_NOT_LOADED, nvml.ERROR_NO_PERMISSION} {
		t.Run(ret.Error(), func(t *testing.T) {
			// Every function but Init is nil: a call panics, and would
			// kill the process with the real library.
			lib := &mock.Interface{InitFunc: func() nvml.Return { return ret }}
			log, logs := newLog()
			n, err := NodeWith(context.Background(), log, lib, t.TempDir(), NoOverrides)
			require.NoError(t, err)
			assert.Equal(t, 0, n.Total.GPU)
			assert.Empty(t, n.GPUs)
			assert.Equal(t, map[string]int{"Init": 1}, nvmlCalls(lib), "no NVML call after Init failed, not even Shutdown")

			records := logs.all()
			require.Len(t, records, 1, "one log line")
			assert.Equal(t, slog.LevelInfo, records[0].Level)
			var logged error
			records[0].Attrs(func(a slog.Attr) bool {
				if a.Key == "err" {
					logged, _ = a.Value.Any().(error)
				}
				return true
			})
			assert.ErrorIs(t, logged, ErrNVMLUnavailable)
			assert.ErrorIs(t, logged, ret)

			_, err = QueryNVML(context.Background(), log, lib)
			assert.ErrorIs(t, err, ErrNVMLUnavailable)
			var initErr *NVMLInitError
			require.ErrorAs(t, err, &initErr)
			assert.Equal(t, ret, initErr.Return)
			assert.NotEmpty(t, initErr.Reason())
		})
	}
}

// NVML that initialises but cannot list its GPUs is shut down all the same,
// and discovery falls back to the device nodes with a warning.
func TestQueryNVMLFailsAfterInit(t *testing.T) {
	tests := map[string]struct {
		breakIt func(*dgxa100.Server)
		want    nvml.Return
	}{
		"count": {func(s *dgxa100.Server) {
			s.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
		}, nvml.ERROR_UNKNOWN},
		"handle": {func(s *dgxa100.Server) {
			s.DeviceGetHandleByIndexFunc = func(int) (nvml.Device, nvml.Return) { return nil, nvml.ERROR_GPU_IS_LOST }
		}, nvml.ERROR_GPU_IS_LOST},
		"minor number": {func(s *dgxa100.Server) {
			s.Devices[3].(*dgxa100.Device).GetMinorNumberFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
		}, nvml.ERROR_UNKNOWN},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := dgxA100()
			tt.breakIt(s)
			_, err := QueryNVML(context.Background(), slog.New(slog.DiscardHandler), s)
			assert.ErrorIs(t, err, tt.want)
			assert.NotErrorIs(t, err, ErrNVMLUnavailable)
			assert.Len(t, s.ShutdownCalls(), 1)

			s = dgxA100()
			tt.breakIt(s)
			log, logs := newLog()
			n, err := NodeWith(context.Background(), log, s, t.TempDir(), NoOverrides)
			require.NoError(t, err)
			assert.Empty(t, n.GPUs, "no device nodes in an empty dev dir")
			records := logs.all()
			require.Len(t, records, 1)
			assert.Equal(t, slog.LevelWarn, records[0].Level)
		})
	}
}

// Memory size is not supported on GPUs that share the host's memory; that
// leaves it unknown instead of failing discovery.
func TestQueryNVMLMemoryNotSupported(t *testing.T) {
	s := dgxA100()
	s.Devices[0].(*dgxa100.Device).GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		return nvml.Memory{}, nvml.ERROR_NOT_SUPPORTED
	}
	info, err := QueryNVML(context.Background(), slog.New(slog.DiscardHandler), s)
	require.NoError(t, err)
	assert.Equal(t, int64(0), info.GPUs[0].MemoryBytes)
	assert.Equal(t, int64(40<<30), info.GPUs[1].MemoryBytes)
}

func TestDiscoverNodeNVMLOverrides(t *testing.T) {
	tests := map[string]struct {
		o         Overrides
		wantGPUs  int
		wantPeers []int // of GPU 0
	}{
		"none":  {NoOverrides, 8, []int{1, 2, 3, 4, 5, 6, 7}},
		"fewer": {Overrides{NumCPUs: 12, NumGPUs: 4, MemoryBytes: 64 << 30}, 4, []int{1, 2, 3}},
		"more":  {Overrides{NumGPUs: 10}, 10, []int{1, 2, 3, 4, 5, 6, 7}},
		"zero":  {Overrides{NumGPUs: 0}, 0, nil},
		"one":   {Overrides{NumGPUs: 1}, 1, nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := dgxA100()
			log, logs := newLog()
			n, err := NodeWith(context.Background(), log, s, t.TempDir(), tt.o)
			require.NoError(t, err)
			assert.Equal(t, tt.wantGPUs, n.Total.GPU)
			require.Len(t, n.GPUs, tt.wantGPUs)
			if tt.o.NumCPUs > 0 {
				assert.Equal(t, tt.o.NumCPUs, n.Total.CPU)
			}
			if tt.o.MemoryBytes > 0 {
				assert.Equal(t, tt.o.MemoryBytes, n.Total.MemoryBytes)
			}
			for i, g := range n.GPUs {
				if i < 8 {
					assert.Equal(t, s.Devices[i].(*dgxa100.Device).UUID, g.UUID, "GPU %d", i)
					for _, p := range g.NVLinkPeers {
						assert.Less(t, p, tt.wantGPUs, "GPU %d: peer %d is not on the node", i, p)
					}
				} else {
					assert.Equal(t, sched.GPU{Index: i, Minor: i}, g, "GPU %d past NVML's: /dev/nvidia%d", i, i)
				}
			}
			if tt.wantGPUs > 0 {
				assert.Equal(t, tt.wantPeers, n.GPUs[0].NVLinkPeers)
			}
			records := logs.all()
			require.Len(t, records, 1)
			assert.Equal(t, "gpus from nvml", records[0].Message)
		})
	}
}

func TestDiscoverNodeCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NodeWith(ctx, slog.New(slog.DiscardHandler), dgxA100(), t.TempDir(), NoOverrides)
	assert.ErrorIs(t, err, context.Canceled)
}

// The node NVML describes is one placement works on: 4 bundles of 2 GPUs
// on a DGX A100 take every GPU once.
func TestPlaceOnNVMLNode(t *testing.T) {
	o := NoOverrides
	o.NumCPUs = 128 // what a DGX A100 has, whatever runs the test
	n, err := NodeWith(context.Background(), slog.New(slog.DiscardHandler), dgxA100(), t.TempDir(), o)
	require.NoError(t, err)
	n.ID = "dgx-a100"
	free := make([]int, len(n.GPUs))
	for i, g := range n.GPUs {
		free[i] = g.Index
	}
	plan, err := sched.Place([]sched.NodeState{{Node: n, Free: n.Total, FreeGPUs: free}}, sched.Request{Count: 4, Bundle: sched.Resources{CPU: 1, GPU: 2}})
	require.NoError(t, err)
	require.Len(t, plan.Assignments, 4)
	seen := map[int]bool{}
	for b, a := range plan.Assignments {
		assert.Equal(t, "dgx-a100", a.NodeID)
		require.Len(t, a.GPUs, 2, "bundle %d", b)
		for _, g := range a.GPUs {
			assert.False(t, seen[g], "GPU %d placed twice", g)
			seen[g] = true
		}
	}
	assert.Len(t, seen, 8)

	_, err = sched.Place([]sched.NodeState{{Node: n, Free: n.Total, FreeGPUs: free}}, sched.Request{Count: 5, Bundle: sched.Resources{GPU: 2}})
	assert.ErrorIs(t, err, sched.ErrInfeasible)
}

// The real go-nvml on this machine: with no driver, NVML is not available,
// with one log line and no crash; with one, it lists the GPUs.
func TestDiscoverNodeSystemNVML(t *testing.T) {
	log, logs := newLog()
	n, err := Node(context.Background(), log, t.TempDir(), NoOverrides)
	require.NoError(t, err)
	records := logs.all()
	require.Len(t, records, 1)
	t.Logf("%s: %d GPUs", records[0].Message, len(n.GPUs))
	if records[0].Message != "gpus from nvml" {
		assert.Empty(t, n.GPUs, "no device nodes in an empty dev dir")
	}

	info, err := QueryNVML(context.Background(), log, nvml.New())
	if err != nil {
		assert.ErrorIs(t, err, ErrNVMLUnavailable)
		return
	}
	assert.Len(t, info.GPUs, len(n.GPUs))
	for _, g := range info.GPUs {
		assert.NotEmpty(t, g.UUID)
		assert.NotEmpty(t, g.PCIBusID)
	}
}

func TestPCIBusID(t *testing.T) {
	tests := map[string]struct {
		in   nvml.PciInfo
		want string
	}{
		"nvml form":  {nvml.PciInfo{BusId: busID("00000000:B7:00.0")}, "0000:b7:00.0"},
		"sysfs form": {nvml.PciInfo{BusId: busID("0000:07:00.0")}, "0000:07:00.0"},
		"legacy":     {nvml.PciInfo{BusIdLegacy: [16]int8{'0', '0', '0', '1', ':', '0', '7', ':', '0', '0', '.', '0'}}, "0001:07:00.0"},
		"unparsed":   {nvml.PciInfo{BusId: busID("GPU-X")}, "gpu-x"},
		"empty":      {nvml.PciInfo{}, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := pciBusID(tt.in); got != tt.want {
				t.Errorf("pciBusID = %q, want %q", got, tt.want)
			}
		})
	}
}
