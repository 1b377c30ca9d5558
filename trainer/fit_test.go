package trainer_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/rendezvous"
	"github.com/rtrain/rtrain/trainer"
)

// job is a Config for a real PyTorch job, with the test's marker in its
// environment and its results in a temporary directory.
type job struct {
	trainer.Config
	marker string

	mu     sync.Mutex
	events []trainer.Event
}

func newJob(t *testing.T, script string, workers int, args ...string) *job {
	t.Helper()
	j := &job{marker: testutil.Marker(t)}
	j.Config = trainer.Config{
		Script:     script,
		Args:       args,
		Workers:    workers,
		Python:     testutil.Python(t),
		ResultsDir: t.TempDir(),
		Env:        []string{j.marker},
		Grace:      2 * time.Second,
		OnEvent: func(e trainer.Event) {
			j.mu.Lock()
			j.events = append(j.events, e)
			j.mu.Unlock()
		},
	}
	t.Cleanup(func() {
		testutil.NoProcesses(t, j.marker, 5*time.Second)
		testutil.NoCgroups(t, cgroupParent, 5*time.Second)
	})
	return j
}

func (j *job) fit(t *testing.T, ctx context.Context) (*trainer.Result, error) {
	t.Helper()
	tr, err := trainer.New(j.Config, nil)
	require.NoError(t, err)
	// A hang guard, not a speed check: a job stuck in a collective would
	// otherwise wait for gloo's 30-minute timeout.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	return tr.Fit(ctx)
}

// onFirst calls fn once, at the first event of type typ.
func (j *job) onFirst(typ trainer.EventType, fn func()) {
	record := j.OnEvent
	var once sync.Once
	j.OnEvent = func(e trainer.Event) {
		record(e)
		if e.Type == typ {
			once.Do(fn)
		}
	}
}

func (j *job) states() []trainer.State {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []trainer.State
	for _, e := range j.events {
		if e.Type == trainer.EventState && (len(out) == 0 || out[len(out)-1] != e.State) {
			out = append(out, e.State)
		}
	}
	return out
}

func (j *job) ofType(typ trainer.EventType) []trainer.Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []trainer.Event
	for _, e := range j.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func example(t *testing.T, name string) string {
	return filepath.Join(testutil.RepoRoot(t), "examples", name)
}

func readParams(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func TestFourWorkersTrainInSync(t *testing.T) {
	out := t.TempDir()
	j := newJob(t, example(t, "train_rtrain.py"), 4, "--epochs", "3", "--out", out)
	res, err := j.fit(t, t.Context())
	require.NoError(t, err)

	assert.Equal(t, trainer.StateSucceeded, res.State)
	assert.Equal(t, []trainer.State{trainer.StatePending, trainer.StateStarting, trainer.StateRunning, trainer.StateSucceeded}, j.states())
	require.Len(t, res.Workers, 4)
	want := readParams(t, filepath.Join(out, "params_rank0.json"))
	for r := 1; r < 4; r++ {
		if got := readParams(t, filepath.Join(out, "params_rank"+strconv.Itoa(r)+".json")); string(got) != string(want) {
			t.Errorf("rank %d ended with different parameters than rank 0: DDP did not synchronise", r)
		}
	}

	// Every rank reports; rank 0's reports are the job's metrics.
	reports := j.ofType(trainer.EventReport)
	assert.Len(t, reports, 12, "4 ranks × 3 epochs")
	assert.Equal(t, 3, res.Reports)
	var losses []float64
	for _, e := range reports {
		if e.Rank == 0 {
			f, err := e.Metrics.Values["loss"].(json.Number).Float64()
			require.NoError(t, err)
			losses = append(losses, f)
		}
	}
	require.Len(t, losses, 3)
	assert.Less(t, losses[2], losses[0], "loss should decrease")
	assert.Equal(t, []string{"epoch", "loss"}, res.Metrics.Keys)

	for r := range 4 {
		_, err := os.Stat(filepath.Join(res.LogDir, "rank_"+strconv.Itoa(r)+".log"))
		assert.NoError(t, err, "rank %d log file", r)
	}
}

// The same torchrun-style script gives bit-identical parameters under rtrain
// and under Debian's torchrun. Debian's torchrun 1.13 cannot start on Python
// 3.11 (Std.from_str returns None for the default --redirects), so it runs
// through scripts/torchrun311.py, which patches that parser and nothing else.
func TestSameResultAsTorchrun(t *testing.T) {
	script := example(t, "train_torchrun.py")
	viaRtrain, viaTorchrun := t.TempDir(), t.TempDir()
	j := newJob(t, script, 4, "--epochs", "2", "--out", viaRtrain)
	_, err := j.fit(t, t.Context())
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// torchrun's port 0 does not work for a standalone store in 1.13.
	port, err := rendezvous.FreePort(ctx, "127.0.0.1")
	require.NoError(t, err)
	cmd := exec.CommandContext(ctx, j.Python, filepath.Join(testutil.RepoRoot(t), "scripts", "torchrun311.py"),
		"--nproc_per_node", "4", "--master_port", strconv.Itoa(port), script, "--epochs", "2", "--out", viaTorchrun)
	// torchrun does not kill its workers when it is killed: make sure.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), j.marker)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "torchrun: %s", out)

	for r := range 4 {
		name := "params_rank" + strconv.Itoa(r) + ".json"
		if string(readParams(t, filepath.Join(viaRtrain, name))) != string(readParams(t, filepath.Join(viaTorchrun, name))) {
			t.Errorf("rank %d: parameters under rtrain differ from torchrun's", r)
		}
	}
}

func TestFailingRankStopsTheOthers(t *testing.T) {
	j := newJob(t, "testdata/fail_rank.py", 4)
	j.Env = append(j.Env, "FAIL_RANK=2")
	j.Grace = 30 * time.Second // the survivors must die of SIGTERM, not of waiting out the grace
	res, err := j.fit(t, t.Context())

	var jerr *trainer.JobError
	require.ErrorAs(t, err, &jerr)
	assert.Equal(t, trainer.StateFailed, res.State)
	assert.Equal(t, 2, jerr.Cause.Rank)
	assert.Equal(t, 1, jerr.Cause.Code)
	assert.Equal(t, "ValueError: boom from rank 2", jerr.Cause.Cause())
	assert.Contains(t, err.Error(), "rank 2 failed")
	tb := jerr.Cause.Traceback()
	require.NotEmpty(t, tb)
	assert.True(t, strings.HasPrefix(tb[0], "Traceback"), "traceback starts with %q", tb[0])

	// The survivors are stopped by rtrain, or fail on their own when gloo
	// sees the peer gone ("Connection closed by peer"), whichever comes
	// first; either way they are not the cause.
	var others []int
	for _, w := range append(jerr.Stopped, jerr.Failed...) {
		others = append(others, w.Rank)
		// Survivors blocked in all_reduce are ended by rtrain's SIGTERM at
		// once, well before gloo's timeout or the 30 s grace would end them.
		if d := w.Time.Sub(jerr.Cause.Time); d > 10*time.Second {
			t.Errorf("rank %d ended %s after the failure: teardown waited", w.Rank, d)
		}
	}
	slices.Sort(others)
	assert.Equal(t, []int{0, 1, 3}, others, "the other ranks are listed, not as the cause")
}

func TestCancelStopsEveryProcess(t *testing.T) {
	j := newJob(t, "testdata/sleeper.py", 2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	reported := make(chan struct{}, 2)
	j.OnEvent = func(e trainer.Event) {
		if e.Type == trainer.EventReport {
			reported <- struct{}{}
		}
	}
	go func() {
		<-reported
		<-reported
		cancel()
	}()
	res, err := j.fit(t, ctx)
	require.ErrorIs(t, err, trainer.ErrCancelled)
	assert.Equal(t, trainer.StateCancelled, res.State)
	// The grandchild rank 0 started in its own session, ignoring SIGTERM,
	// is gone too (checked by newJob's cleanup, and here for clarity).
	testutil.NoProcesses(t, j.marker, 5*time.Second)
}

func TestTwoJobsAtOnce(t *testing.T) {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		j := newJob(t, example(t, "train_torchrun.py"), 2, "--epochs", "1")
		wg.Go(func() { _, errs[i] = j.fit(t, t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "job %d", i)
	}
}

func TestWorkersGetTheContract(t *testing.T) {
	out := t.TempDir()
	wd := t.TempDir()
	j := newJob(t, "testdata/dump_env.py", 3, "--flag", "value")
	j.Env = append(j.Env, "OUT_DIR="+out, "USER_VAR=hello", "PYTHONPATH=/user/path")
	j.WorkingDir = wd
	j.Name = "contract-run"
	one := 1
	j.NumGPUs = &one // a GPU node running a CPU job
	res, err := j.fit(t, t.Context())
	require.NoError(t, err)
	assert.Equal(t, "contract-run", res.Name)

	ports := map[string]bool{}
	for r := range 3 {
		var got struct {
			Env  map[string]string
			Cwd  string
			Argv []string
			Shim string
		}
		b := readParams(t, filepath.Join(out, "env_rank"+strconv.Itoa(r)+".json"))
		require.NoError(t, json.Unmarshal(b, &got))
		e := got.Env
		assert.Equal(t, strconv.Itoa(r), e["RANK"])
		assert.Equal(t, strconv.Itoa(r), e["LOCAL_RANK"])
		assert.Equal(t, "3", e["WORLD_SIZE"])
		assert.Equal(t, "3", e["LOCAL_WORLD_SIZE"])
		assert.Equal(t, "0", e["GROUP_RANK"])
		assert.Equal(t, "1", e["GROUP_WORLD_SIZE"])
		assert.Equal(t, "127.0.0.1", e["MASTER_ADDR"])
		assert.Equal(t, "contract-run", e[pyshim.RunNameEnv])
		assert.Equal(t, "hello", e["USER_VAR"], "--env reaches the workers")
		assert.NotEmpty(t, e["PATH"], "workers inherit rtrain's environment")
		assert.Equal(t, "1", e["NCCL_ASYNC_ERROR_HANDLING"], "torch 1.13 reads the pre-2.2 name")
		assert.Equal(t, "", e["CUDA_VISIBLE_DEVICES"], "a CPU job on a GPU node sees no GPU")
		assert.NotEmpty(t, e["OMP_NUM_THREADS"])
		assert.True(t, strings.HasSuffix(e["PYTHONPATH"], ":/user/path"), "PYTHONPATH = %q keeps the user's entries", e["PYTHONPATH"])
		assert.Equal(t, wd, got.Cwd)
		assert.Equal(t, []string{"--flag", "value"}, got.Argv)
		ports[e["MASTER_PORT"]] = true
	}
	assert.Len(t, ports, 1, "all ranks share one MASTER_PORT")
	assert.NotContains(t, ports, "29500")
}

func TestBadInputFailsBeforeLaunch(t *testing.T) {
	py := testutil.Python(t)
	// -S drops site-packages: an interpreter that runs but has no torch.
	noTorch := filepath.Join(t.TempDir(), "python-no-torch")
	require.NoError(t, os.WriteFile(noTorch, []byte("#!/bin/sh\nexec "+py+" -S \"$@\"\n"), 0o755))
	zero := 0
	script := example(t, "train_rtrain.py")
	tests := []struct {
		name   string
		config func(*trainer.Config)
		want   string
		atNew  bool
	}{
		{"missing script", func(c *trainer.Config) { c.Script = "nope/train.py" }, "script nope/train.py does not exist", true},
		{"zero workers", func(c *trainer.Config) { c.Workers = 0 }, "--workers must be at least 1, got 0", true},
		{"negative workers", func(c *trainer.Config) { c.Workers = -2 }, "--workers must be at least 1, got -2", true},
		{"bad env entry", func(c *trainer.Config) { c.Env = []string{"NOEQUALS"} }, `--env "NOEQUALS": want KEY=VALUE`, true},
		{"python without torch", func(c *trainer.Config) { c.Python = noTorch }, "cannot import torch", false},
		{"python that does not exist", func(c *trainer.Config) { c.Python = "/no/such/python3" }, "--python /no/such/python3", false},
		{"gpus on a node without", func(c *trainer.Config) { c.GPUsPerWorker = 1; c.NumGPUs = &zero }, "asked 4 GPUs, this node has 0", false},
		{"syntax error", func(c *trainer.Config) { c.Script = "testdata/syntax_error.py" }, "testdata/syntax_error.py: syntax error at line 3", false},
		{"more workers than a node can run", func(c *trainer.Config) { c.Workers = 100000; c.NumCPUs = 2 }, "--workers 100000: this node has 2 cores, and rtrain runs at most 128 workers on it", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results := t.TempDir()
			cfg := trainer.Config{Script: script, Workers: 4, Python: py, ResultsDir: results}
			tt.config(&cfg)
			tr, err := trainer.New(cfg, nil)
			if !tt.atNew {
				require.NoError(t, err)
				var res *trainer.Result
				res, err = tr.Fit(t.Context())
				require.NotNil(t, res)
				assert.Equal(t, trainer.StateFailed, res.State)
			}
			require.ErrorIs(t, err, trainer.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
			entries, _ := os.ReadDir(results)
			assert.Empty(t, entries, "nothing was launched")
		})
	}
}

func TestFitOnlyOnce(t *testing.T) {
	tr, err := trainer.New(trainer.Config{Script: "testdata/syntax_error.py", Workers: 1, Python: "/no/python"}, nil)
	require.NoError(t, err)
	_, _ = tr.Fit(t.Context())
	_, err = tr.Fit(t.Context())
	require.Error(t, err)
	assert.False(t, errors.Is(err, trainer.ErrInvalidConfig))
}

// A rank that raised but is slow to exit is still the cause when a peer,
// brought down by it, exits first and rtrain stops the raiser.
func TestCauseIsTheRankThatRaisedFirstNotTheFirstToExit(t *testing.T) {
	j := newJob(t, "testdata/fail_rank.py", 3)
	j.Env = append(j.Env, "FAIL_RANK=1", "FAIL_SLOW_EXIT=1")
	// The exit it was making is Python's for an uncaught exception, 1,
	// whatever rtrain's stop made of it.
	j.MaxFailures, j.RetryExitCodes = 1, []int{1}
	_, err := j.fit(t, t.Context())

	var jerr *trainer.JobError
	require.ErrorAs(t, err, &jerr)
	for _, e := range append(jerr.Earlier, jerr) {
		assert.Equal(t, 1, e.Cause.Rank, "attempt %d: cause: %s", e.Attempt, e.Cause.Cause())
		assert.Equal(t, "ValueError: boom from rank 1", e.Cause.Cause())
		for _, w := range e.Stopped {
			assert.NotEqual(t, 1, w.Rank, "the rank that raised is listed as stopped by rtrain")
		}
	}
	assert.Equal(t, 1, jerr.Attempt, "restarted: exit code 1 is a --retry-exit-codes")
	assert.Contains(t, jerr.NoRestart, "more than --max-failures 1")
}

// A traceback a worker printed and went on from is no failure: rtrain
// stopping that worker after another failed does not make it the cause.
func TestAHandledTracebackIsNoFailure(t *testing.T) {
	j := newJob(t, "testdata/handled_traceback.py", 2)
	j.Python = "/usr/bin/python3"
	_, err := j.fit(t, t.Context())

	var jerr *trainer.JobError
	require.ErrorAs(t, err, &jerr)
	assert.Equal(t, 1, jerr.Cause.Rank)
	assert.Equal(t, 2, jerr.Cause.Code)
	assert.Empty(t, jerr.Failed)
	require.Len(t, jerr.Stopped, 1)
	assert.Equal(t, 0, jerr.Stopped[0].Rank)
}

// A rank that raised and then hung in its exit, leaving its peers waiting
// in a collective, is the cause of the hang, named by its exception.
func TestARaiserStuckInItsExitIsTheCauseOfTheHang(t *testing.T) {
	j := newJob(t, "testdata/fail_rank.py", 3)
	j.Env = append(j.Env, "FAIL_RANK=1", "FAIL_EXIT_HANGS=1")
	j.HangTimeout = 2 * time.Second
	_, err := j.fit(t, t.Context())

	var jerr *trainer.JobError
	require.ErrorAs(t, err, &jerr)
	assert.Equal(t, 1, jerr.Cause.Rank)
	assert.Equal(t, "ValueError: boom from rank 1", jerr.Cause.Cause())
	for _, w := range jerr.Failed {
		assert.Contains(t, w.Hung, "hung: no report()", "rank %d", w.Rank)
	}
}

// A rank that finished its program and then died as Python shut down did
// its work: the job succeeds with a warning that names the rank, the
// signal and what the teardown printed, the other ranks are not stopped,
// and nothing is restarted. A rank that dies the same way before its
// program finished, or after asking for a non-zero exit status, fails the
// job as before.
func TestACrashInTeardownAfterAFinishIsAWarning(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		ok   bool
	}{
		{"after the finish", nil, true},
		{"after sys.exit(0)", []string{"CRASH_EXIT=0"}, true},
		{"after sys.exit(4)", []string{"CRASH_EXIT=4"}, false},
		{"before the finish", []string{"CRASH_BEFORE_FINISH=1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJob(t, "testdata/teardown_crash.py", 3)
			j.Python = "/usr/bin/python3"
			j.MaxFailures = 2
			j.Env = append(j.Env, tt.env...)
			res, err := j.fit(t, t.Context())
			if !tt.ok {
				var jerr *trainer.JobError
				require.ErrorAs(t, err, &jerr)
				assert.Equal(t, 1, jerr.Cause.Rank)
				assert.Empty(t, jerr.Cause.TeardownCrash)
				assert.Empty(t, j.warnings(), "no teardown warning for a rank that failed")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, trainer.StateSucceeded, res.State)
			assert.Zero(t, res.Restarts, "a finished job is not restarted")
			require.Len(t, res.Workers, 3)
			for _, w := range res.Workers {
				assert.True(t, w.Success(), "rank %d: %s", w.Rank, w.Exit)
				assert.False(t, w.Stopped, "rank %d was stopped: the crash after a finish stopped the others", w.Rank)
			}
			crashed := res.Workers[1]
			assert.Equal(t, syscall.SIGABRT, crashed.Signal)
			assert.Contains(t, crashed.TeardownCrash, "killed by signal 6")
			assert.Contains(t, crashed.TeardownCrash, "terminate called without an active exception")
			warnings := j.warnings()
			require.Len(t, warnings, 1)
			assert.Equal(t, 1, warnings[0].Rank)
			assert.Contains(t, warnings[0].Message, "rank 1 finished, then crashed as Python shut down: killed by signal 6 (aborted): terminate called without an active exception")
		})
	}
}

func (j *job) warnings() []trainer.Event { return j.ofType(trainer.EventWarning) }

// A collective that gloo's thread finishes as the program ends does not
// abort the rank: rtrain's sitecustomize lets go of the GIL for a moment
// before Python finalizes, so the thread frees its tensor while Python is
// whole. Under torchrun or a plain launch, ranks 0 and 2 die of SIGABRT.
func TestAFinishedCollectiveDoesNotAbortTheExit(t *testing.T) {
	j := newJob(t, "testdata/gloo_exit_race.py", 3)
	j.Python = "/usr/bin/python3"
	res, err := j.fit(t, t.Context())
	require.NoError(t, err)
	for _, w := range res.Workers {
		assert.True(t, w.Exit.Success(), "rank %d: %s", w.Rank, w.Exit)
		assert.Empty(t, w.TeardownCrash, "rank %d", w.Rank)
	}
	assert.Empty(t, j.warnings())
}
