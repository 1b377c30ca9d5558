package trainer_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/trainer"
)

// fakeGPUs makes device nodes nvidia0..nvidia<n-1> (char 195:i) in a
// temporary directory. With no driver behind them, opening one that the
// device rules allow fails with ENXIO; one they deny, with EPERM.
func fakeGPUs(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		path := filepath.Join(dir, fmt.Sprintf("nvidia%d", i))
		require.NoError(t, unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(195, uint32(i)))))
	}
	return dir
}

// openReport is what testdata/open_devices.py prints.
type openReport struct {
	Rank          int
	CUDAVisible   string `json:"CUDA_VISIBLE_DEVICES"`
	NVIDIAVisible string `json:"NVIDIA_VISIBLE_DEVICES"`
	Device        string `json:"RTRAIN_CUDA_DEVICE"`
	Open          map[string]string
}

// gpuJob is a job of open_devices.py on an embedded node with three fake
// GPUs, one GPU per worker.
func gpuJob(t *testing.T, devDir string, workers int) *job {
	j := newJob(t, "testdata/open_devices.py", workers)
	three := 3
	j.NumGPUs = &three
	j.GPUsPerWorker = 1
	j.Env = append(j.Env, "DEV_DIR="+devDir)
	return j
}

// opens returns each rank's report, by rank.
func (j *job) opens(t *testing.T) map[int]openReport {
	t.Helper()
	out := map[int]openReport{}
	for _, e := range j.ofType(trainer.EventLog) {
		if e.Stream != "stdout" || !strings.HasPrefix(e.Line, "{") {
			continue
		}
		var r openReport
		require.NoError(t, json.Unmarshal([]byte(e.Line), &r), e.Line)
		out[r.Rank] = r
	}
	return out
}

func TestGPUDeviceRules(t *testing.T) {
	testutil.RequireCgroups(t)
	dev := fakeGPUs(t, 3)
	const allowed, denied = "ENXIO", "EPERM" // no driver behind an allowed node
	tests := []struct {
		isolation string
		want      map[int]openReport
	}{
		// The job's GPUs are 0 and 1: both workers open both, neither opens 2.
		{"", map[int]openReport{
			0: {0, "0,1", "0,1", "0", map[string]string{"nvidia0": allowed, "nvidia1": allowed, "nvidia2": denied}},
			1: {1, "0,1", "0,1", "1", map[string]string{"nvidia0": allowed, "nvidia1": allowed, "nvidia2": denied}},
		}},
		{trainer.GPUIsolationWorker, map[int]openReport{
			0: {0, "0", "0", "0", map[string]string{"nvidia0": allowed, "nvidia1": denied, "nvidia2": denied}},
			1: {1, "1", "1", "0", map[string]string{"nvidia0": denied, "nvidia1": allowed, "nvidia2": denied}},
		}},
	}
	for _, tt := range tests {
		t.Run("isolation="+tt.isolation, func(t *testing.T) {
			j := gpuJob(t, dev, 2)
			j.GPUIsolation = tt.isolation
			_, err := j.fit(t, t.Context())
			require.NoError(t, err)
			assert.Empty(t, j.ofType(trainer.EventWarning), "root with cgroups: nothing missing")
			if d := cmp.Diff(tt.want, j.opens(t)); d != "" {
				t.Errorf("what each worker sees and opens (-want +got):\n%s", d)
			}
		})
	}
}

// Two jobs at once each get GPUs of their own, and neither can open the
// other's: each worker opens the devices only once both jobs run.
func TestTwoJobsNeverShareGPUs(t *testing.T) {
	testutil.RequireCgroups(t)
	dev := fakeGPUs(t, 3)
	syncDir := t.TempDir()
	jobs := []*job{gpuJob(t, dev, 1), gpuJob(t, dev, 1)}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		j.Name = fmt.Sprintf("job-%d", i)
		j.Env = append(j.Env, "SYNC_DIR="+syncDir, "SYNC_COUNT=2")
		wg.Go(func() { _, errs[i] = j.fit(t, t.Context()) })
	}
	wg.Wait()
	owner := map[string]string{} // device -> the job that can open it
	for i, j := range jobs {
		require.NoError(t, errs[i], "job %d", i)
		r, ok := j.opens(t)[0]
		require.True(t, ok, "job %d printed no report", i)
		var mine []string
		for node, got := range r.Open {
			if got != "EPERM" {
				mine = append(mine, node)
				if other, taken := owner[node]; taken {
					t.Errorf("%s opened by %s and %s", node, other, j.Name)
				}
				owner[node] = j.Name
			}
		}
		require.Len(t, mine, 1, "job %d opens %v: its one GPU, no other", i, r.Open)
		assert.Equal(t, "nvidia"+r.CUDAVisible, mine[0], "job %d sees the GPU it may open", i)
	}
}

func TestMemoryLimitIsReportedAsOutOfMemory(t *testing.T) {
	testutil.RequireCgroups(t)
	j := newJob(t, "testdata/oom.py", 1)
	j.MemoryPerWorker = 300 << 20
	res, err := j.fit(t, t.Context())
	var jerr *trainer.JobError
	require.ErrorAs(t, err, &jerr, "1 GiB touched under a 300M limit")
	assert.Equal(t, trainer.StateFailed, res.State)
	assert.True(t, jerr.Cause.OutOfMemory(), "exit %+v", jerr.Cause.Exit)
	assert.Equal(t, "killed: out of memory, limit 300M", jerr.Cause.Cause())
	assert.Equal(t, "rank 0 failed: killed: out of memory, limit 300M", err.Error())
}

func TestPidsLimitStopsAForkBomb(t *testing.T) {
	testutil.RequireCgroups(t)
	const limit = 40
	j := newJob(t, "testdata/fork_bomb.py", 1)
	j.PidsPerWorker = limit
	_, err := j.fit(t, t.Context())
	require.NoError(t, err)
	var forked int
	var why string
	for _, e := range j.ofType(trainer.EventLog) {
		if _, err := fmt.Sscanf(e.Line, "forked %d then %s", &forked, &why); err == nil {
			break
		}
	}
	t.Logf("forked %d then %s under a limit of %d", forked, why, limit)
	assert.Equal(t, "EAGAIN", why, "the fork the limit refused")
	assert.Positive(t, forked)
	assert.Less(t, forked, limit)
}

// A worker leaves a grandchild in its own session, orphaned, that ignores
// SIGTERM, and succeeds: the grandchild goes with the job (newJob's cleanup
// checks, through the marker every process inherits).
func TestOrphanInItsOwnSessionGoesWithTheJob(t *testing.T) {
	j := newJob(t, "testdata/orphan.py", 1)
	_, err := j.fit(t, t.Context())
	require.NoError(t, err)
	testutil.NoProcesses(t, j.marker, 5*time.Second)
}

func TestIsolationInputErrors(t *testing.T) {
	script := example(t, "train_rtrain.py")
	for _, tt := range []struct {
		name   string
		config func(*trainer.Config)
		want   string
	}{
		{"gpu isolation", func(c *trainer.Config) { c.GPUIsolation = "node" }, `--gpu-isolation "node": want job or worker`},
		{"isolation", func(c *trainer.Config) { c.Isolation = "lax" }, `--isolation "lax": want best-effort or strict`},
		{"negative memory", func(c *trainer.Config) { c.MemoryPerWorker = -1 }, "--memory-per-worker must be 0 (no limit) or more"},
		{"negative pids", func(c *trainer.Config) { c.PidsPerWorker = -5 }, "--pids-per-worker must be 0"},
		{"tiny cpu quota", func(c *trainer.Config) { c.CPUsPerWorker = 0.001 }, "below the kernel's smallest CPU quota"},
		{"gpu as a custom resource", func(c *trainer.Config) { c.ResourcesPerWorker = map[string]float64{"GPU": 1} }, `--resources-per-worker: "GPU" is not a custom resource`},
		{"bad custom name", func(c *trainer.Config) { c.Resources = map[string]float64{"a,b": 1} }, `--resources: custom resource "a,b": names are letters`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := trainer.Config{Script: script, Workers: 1}
			tt.config(&cfg)
			_, err := trainer.New(cfg, nil)
			require.ErrorIs(t, err, trainer.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}
