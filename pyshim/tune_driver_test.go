package pyshim

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/testutil"
)

// Sweeps run as a user runs them: `python sweep.py`, the wheel in a venv,
// every trial a job on the sweep's own one-node cluster.

func TestSweepOfAHundredTrials(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var got struct {
		Trials      int                `json:"trials"`
		Errors      int                `json:"errors"`
		Terminated  int                `json:"terminated"`
		BestScore   float64            `json:"best_score"`
		BestConfig  map[string]float64 `json:"best_config"`
		Iterations  []int              `json:"iterations"`
		ScoresMatch bool               `json:"scores_match"`
		Path        string             `json:"path"`
		LRRange     []float64          `json:"lr_range"`
	}
	storage := t.TempDir()
	marker := testutil.Marker(t)
	out := lastJSON(t, driver(t, ctx, "sweep.py", "STORAGE="+storage, marker), &got)
	assert.Equal(t, 100, got.Trials, out)
	assert.Zero(t, got.Errors)
	assert.Equal(t, 100, got.Terminated)
	assert.True(t, got.ScoresMatch, "every trial's score is its own config's")
	assert.Equal(t, []int{1}, got.Iterations, "training_iteration filled in")
	assert.Equal(t, filepath.Join(storage, "sweep"), got.Path)
	assert.GreaterOrEqual(t, got.LRRange[0], 1e-5, "loguniform's bounds")
	assert.Less(t, got.LRRange[1], 1e-2)
	assert.Contains(t, out, "(100 of 100 done)")
	testutil.NoProcesses(t, marker, 10*time.Second)
}

// ASHA, one trial at a time, over constant curves 1, 4, 2, 3 with
// max_t=9, grace_period=1, reduction_factor=3: rungs at 1, 3 and 9, and a
// trial stops at a rung when its value is below the 2/3 quantile of what
// the trials before it recorded there. 1 and 4 run to the end (1 is
// first; 4 beats 1); 2 stops at 1 (below 3, the quantile of 1 and 4); 3
// passes rung 1 (the quantile of 1, 4, 2 is 2.67) and rung 3 (that of 1
// and 4 is 3, and 3 is not below it), so it runs to 9.
func TestSweepASHAStopsWhatRaysRuleStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var got struct {
		Iterations map[string]int `json:"iterations"`
		Errors     int            `json:"errors"`
		Best       int            `json:"best"`
	}
	out := lastJSON(t, driver(t, ctx, "asha.py", "STORAGE="+t.TempDir()), &got)
	assert.Equal(t, map[string]int{"1": 9, "4": 9, "2": 1, "3": 9}, got.Iterations, out)
	assert.Zero(t, got.Errors, "an early stop is not a failure")
	assert.Equal(t, 4, got.Best)
}

func TestSweepWithFailingTrials(t *testing.T) {
	tests := []struct {
		name, kind string
		want       string
	}{
		{"raises", "TrainingFailedError", "rank 0 failed (exit code 1): ValueError: bad trial "},
		{"big", "ValueError", "asked 64 CPUs, this node has 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			var got struct {
				Trials int      `json:"trials"`
				Errors []string `json:"errors"`
				Types  []string `json:"types"`
			}
			out := lastJSON(t, driver(t, ctx, "tune_fails.py", "CASE="+tt.name, "STORAGE="+t.TempDir()), &got)
			assert.Equal(t, 3, got.Trials, "the grid finishes: %s", out)
			assert.Equal(t, []string{tt.kind}, got.Types)
			require.Len(t, got.Errors, 3)
			for _, e := range got.Errors {
				assert.Contains(t, e, tt.want)
			}
		})
	}
}

// TorchTrainer trials of 2 and 4 workers, each holding 3 CPUs of a 4-CPU
// node: no two fit at once, so each starts after the one before it ended,
// and each has its whole gang.
func TestSweepOfTorchTrainerGangs(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var got struct {
		Runs   [][4]float64 `json:"runs"`
		Errors int          `json:"errors"`
	}
	out := lastJSON(t, driver(t, ctx, "tune_gang.py", "STORAGE="+t.TempDir()), &got)
	require.Len(t, got.Runs, 4, out)
	assert.Zero(t, got.Errors)
	var worlds, lrs []float64
	for i, r := range got.Runs {
		worlds, lrs = append(worlds, r[0]), append(lrs, r[3])
		if i > 0 {
			assert.GreaterOrEqual(t, r[1], got.Runs[i-1][2], "trial %d started before the one before it ended", i)
		}
	}
	sort.Float64s(worlds)
	sort.Float64s(lrs)
	assert.Equal(t, []float64{2, 2, 4, 4}, worlds, "the trials' scaling_config")
	assert.Equal(t, []float64{0.1, 0.1, 0.2, 0.2}, lrs, "param_space's train_loop_config merged in")
	waits := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(strings.TrimPrefix(line, "rtrain.tune: trial "), " waits: "); ok {
			waits[name]++
		}
	}
	assert.NotEmpty(t, waits, "the 4-worker trials wait for room:\n%s", out)
	for name, n := range waits {
		assert.Equal(t, 1, n, "trial %s says why it waits once", name)
	}
}

// A driver killed mid-sweep; Tuner.restore finishes the sweep, the
// unfinished trials going on from their checkpoints.
func TestSweepRestoredAfterItsDriverIsKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	storage := t.TempDir()
	marker := testutil.Marker(t)
	first := driver(t, ctx, "tune_restore.py", "STORAGE="+storage, marker)
	stdout, err := first.StdoutPipe()
	require.NoError(t, err)
	first.Stderr = first.Stdout
	require.NoError(t, first.Start())
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.Contains(sc.Text(), "step 4") {
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	testutil.NoProcesses(t, marker, 15*time.Second)
	_, err = os.Stat(filepath.Join(storage, "restore", "tuner.pkl"))
	require.NoError(t, err)

	var got struct {
		N       []int `json:"n"`
		Resumed []int `json:"resumed"`
		Errors  int   `json:"errors"`
		Trials  int   `json:"trials"`
	}
	out := lastJSON(t, driver(t, ctx, "tune_restore.py", "STORAGE="+storage), &got)
	assert.Equal(t, 4, got.Trials, out)
	assert.Equal(t, []int{10, 10, 10, 10}, got.N, "every trial counted to the end")
	assert.Zero(t, got.Errors)
	assert.NotEqual(t, []int{0, 0, 0, 0}, got.Resumed, "some trial went on from a checkpoint: %v", got.Resumed)
}

// PBT on a toy where a higher lr scores more: trials at the bottom go on
// from the checkpoints of better ones, counting on from their iterations.
func TestSweepPBTExploitsBetterTrials(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var got struct {
		Trials []struct {
			ID        string  `json:"id"`
			Origins   string  `json:"origins"`
			Score     float64 `json:"score"`
			Iteration int     `json:"iteration"`
		} `json:"trials"`
		Errors int   `json:"errors"`
		Kept   []int `json:"kept"`
	}
	out := lastJSON(t, driver(t, ctx, "tune_pbt.py", "STORAGE="+t.TempDir()), &got)
	require.Len(t, got.Trials, 4, out)
	assert.Zero(t, got.Errors, "an exploit is not a failure")
	exploited := 0
	for _, tr := range got.Trials {
		if tr.Origins != "" {
			exploited++
			assert.NotContains(t, tr.Origins, tr.ID)
		}
		assert.Equal(t, 12, tr.Iteration, "an exploited trial counts on from its source's iterations")
	}
	assert.Positive(t, exploited, "some trial went on from a better one's checkpoint:\n%s", out)
	// num_to_keep=1 held off only while an exploit could start from them
	// (ray#9036), applied once the sweep is over.
	assert.Equal(t, []int{1, 1, 1, 1}, got.Kept)
}

// OptunaSearch through the Tuner, two trials at a time: num_samples trials
// and no more, each told back to Optuna.
func TestSweepWithOptuna(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var got struct {
		Trials int     `json:"trials"`
		Errors int     `json:"errors"`
		Best   float64 `json:"best"`
	}
	out := lastJSON(t, driver(t, ctx, "tune_search.py", "CASE=optuna", "STORAGE="+t.TempDir()), &got)
	assert.Equal(t, 20, got.Trials, out)
	assert.Zero(t, got.Errors)
	assert.Greater(t, got.Best, -0.5, "the optimum is 0")
}

// HyperBand pauses trials at its milestones and resumes the winners from
// their checkpoints; the losers stop early, none fails.
func TestSweepWithHyperBand(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var got struct {
		Iterations map[string]int `json:"iterations"`
		Resumed    map[string]int `json:"resumed"`
		Errors     int            `json:"errors"`
		Best       int            `json:"best"`
	}
	out := lastJSON(t, driver(t, ctx, "tune_search.py", "CASE=hyperband", "STORAGE="+t.TempDir()), &got)
	// max_t=9, eta=3: brackets of 3 trials to 9 (no halving), 5 trials
	// halved at 3 to the best 2, and 1 trial halved at 1 and 3 to itself;
	// the grid fills them in order.
	assert.Equal(t, map[string]int{"1": 9, "2": 9, "3": 9, "4": 3, "5": 3, "6": 3, "7": 9, "8": 9, "9": 9}, got.Iterations, out)
	assert.Zero(t, got.Errors, "a stop at a milestone is not a failure")
	assert.Equal(t, 9, got.Best)
	// Of the two that go on from the 5-trial bracket, the one whose
	// report completed the milestone continues at once; one paused there
	// goes on from the checkpoint of its milestone's report.
	require.NotEmpty(t, got.Resumed, out)
	for v, from := range got.Resumed {
		assert.Contains(t, []string{"7", "8"}, v, "only winners resume")
		assert.Equal(t, 3, from, "trial %s resumed from its milestone's checkpoint", v)
	}
}

// Ray Train V2's style: each trial's trainable builds a TorchTrainer of 2
// workers and calls fit(); TuneReportCallback passes its reports up as the
// trial's, and the training run is named after the trial.
func TestSweepOfTrainablesThatFitTorchTrainers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var got struct {
		Trials []struct {
			ID        string  `json:"id"`
			Iteration int     `json:"iteration"`
			Final     float64 `json:"final"`
			Outer     string  `json:"outer"`
			Run       string  `json:"run"`
			LR        float64 `json:"lr"`
		} `json:"trials"`
		Losses  [][]float64 `json:"losses"`
		Errors  int         `json:"errors"`
		Outside *string     `json:"outside"`
	}
	marker := testutil.Marker(t)
	out := lastJSON(t, driver(t, ctx, "tune_v2.py", "STORAGE="+t.TempDir(), marker), &got)
	require.Len(t, got.Trials, 2, out)
	assert.Zero(t, got.Errors)
	for _, tr := range got.Trials {
		assert.Equal(t, 4, tr.Iteration, "three reports passed up, then the trainable's own")
		assert.Equal(t, tr.LR, tr.Final)
		assert.Equal(t, tr.ID, tr.Outer, "get_context().get_trial_id() in the trial")
		assert.Equal(t, "trainable_"+tr.ID+"_TorchTrainer", tr.Run)
	}
	assert.InDeltaSlice(t, []float64{0.3, 0.2, 0.1}, got.Losses[0], 1e-9)
	assert.InDeltaSlice(t, []float64{0.6, 0.4, 0.2}, got.Losses[1], 1e-9)
	assert.Nil(t, got.Outside, "get_trial_id() is None outside a sweep")
	testutil.NoProcesses(t, marker, 10*time.Second)
}
