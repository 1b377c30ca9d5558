package discover

import (
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGPUMonitorSamplesEveryGPU(t *testing.T) {
	s := dgxA100()
	for i, d := range s.Devices {
		d.(*dgxa100.Device).GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: uint32(10 * i)}, nvml.SUCCESS
		}
	}
	// GPU 7 cannot say how busy it is.
	s.Devices[7].(*dgxa100.Device).GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED
	}
	m := OpenGPUMonitor(s)
	require.NotNil(t, m)
	stats := m.Sample()
	require.Len(t, stats, 8)
	for i, st := range stats[:7] {
		assert.Equal(t, i, st.Index)
		assert.InDelta(t, float64(i)/10, st.Utilization, 1e-9)
		assert.Equal(t, int64(40<<30), st.MemoryTotal, "GPU %d", i)
	}
	assert.Equal(t, -1.0, stats[7].Utilization, "unknown, not idle")
	m.Close()
}

func TestGPUMonitorWithoutNVMLCallsNothingElse(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
	m := OpenGPUMonitor(lib)
	assert.Nil(t, m)
	assert.Nil(t, m.Sample(), "a nil monitor samples nothing")
	m.Close()
	assert.Len(t, lib.InitCalls(), 1)
	assert.Empty(t, lib.ShutdownCalls(), "no call after a failed Init")
	assert.Empty(t, lib.DeviceGetCountCalls())
}
