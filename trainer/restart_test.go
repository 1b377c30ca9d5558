package trainer_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/trainer"
)

// A rank SIGKILLed mid-run is restarted with the others from the latest
// checkpoint; the job ends with the parameters of a run that never failed,
// and the restarted attempt begins at the epoch after the restored one.
func TestRestartAfterAKilledWorkerIsBitExact(t *testing.T) {
	const epochs = "4"
	whole := t.TempDir()
	j := newJob(t, example(t, "train_rtrain.py"), 2, "--epochs", epochs, "--out", whole)
	_, err := j.fit(t, t.Context())
	require.NoError(t, err)

	restarted := t.TempDir()
	r := newJob(t, filepath.Join(testutil.RepoRoot(t), "trainer", "testdata", "crash_once.py"), 2, "--epochs", epochs, "--out", restarted)
	r.MaxFailures = 1
	r.Env = append(r.Env, "CRASH_RANK=1", "CRASH_EPOCH=2")
	res, err := r.fit(t, t.Context())
	require.NoError(t, err)
	assert.Equal(t, 1, res.Restarts)

	restarts := r.ofType(trainer.EventRestart)
	require.Len(t, restarts, 1)
	assert.Equal(t, 1, restarts[0].Attempt)
	assert.Equal(t, 1, restarts[0].Exit.Rank, "the killed rank is the root cause")
	assert.Equal(t, syscall.SIGKILL, restarts[0].Exit.Signal)
	assert.Contains(t, restarts[0].Message, "checkpoint_000002", "restarted from the latest committed checkpoint")

	// Reports are epochs 0 1 (first attempt: epoch 2 never completed on
	// rank 1), then 2 3 after the restart.
	var epochs0 []int64
	for _, e := range r.ofType(trainer.EventReport) {
		if e.Rank == 0 {
			n, err := e.Metrics.Values["epoch"].(json.Number).Int64()
			require.NoError(t, err)
			epochs0 = append(epochs0, n)
		}
	}
	require.GreaterOrEqual(t, len(epochs0), 4, "%v", epochs0)
	assert.Equal(t, []int64{2, 3}, epochs0[len(epochs0)-2:], "the restart resumes at the epoch after the restored one")

	for _, name := range []string{"params_rank0.json", "params_rank1.json"} {
		assert.Equal(t, string(readParams(t, filepath.Join(whole, name))), string(readParams(t, filepath.Join(restarted, name))),
			"%s: a restarted run must end exactly where an uninterrupted one does", name)
	}
	_, err = os.Stat(filepath.Join(res.RunDir, ".rtrain-restore"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestRestartBudget(t *testing.T) {
	script := filepath.Join(testutil.RepoRoot(t), "trainer", "testdata", "exit_code.py")
	tests := []struct {
		name        string
		maxFailures int
		retry       []int
		fatal       []int
		code        int
		attempts    int
		noRestart   string
	}{
		{"budget spent", 2, nil, nil, 3, 3, "3 failures, more than --max-failures 2"},
		{"no budget", 0, nil, nil, 3, 1, "no restarts allowed"},
		{"fatal code", 5, nil, []int{3}, 3, 1, "exit code 3 is fatal"},
		{"not a retry code", 5, []int{75}, nil, 3, 1, "exit code 3 is not one of --retry-exit-codes"},
		{"retry code", 1, []int{75}, nil, 75, 2, "2 failures, more than --max-failures 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJob(t, script, 3)
			j.Python = "/usr/bin/python3"
			j.MaxFailures, j.RetryExitCodes, j.FatalExitCodes = tt.maxFailures, tt.retry, tt.fatal
			j.Env = append(j.Env, fmt.Sprintf("EXIT_CODE=%d", tt.code))
			res, err := j.fit(t, t.Context())
			var jerr *trainer.JobError
			require.ErrorAs(t, err, &jerr)
			assert.Equal(t, trainer.StateFailed, res.State)
			assert.Equal(t, tt.attempts-1, res.Restarts)
			assert.Equal(t, tt.attempts-1, jerr.Attempt)
			require.Len(t, jerr.Earlier, tt.attempts-1)
			for i, e := range append(jerr.Earlier, jerr) {
				assert.Equal(t, i, e.Attempt)
				assert.Equal(t, 1, e.Cause.Rank, "attempt %d names the failing rank", i)
				assert.Equal(t, tt.code, e.Cause.Code, "attempt %d names its exit code", i)
			}
			assert.Contains(t, jerr.NoRestart, tt.noRestart)
			assert.Len(t, j.ofType(trainer.EventRestart), tt.attempts-1)
		})
	}
}

// A job that stops reporting is failed after HangTimeout, with every
// worker's Python stack in its root cause.
func TestHangTimeoutShowsPythonStacks(t *testing.T) {
	j := newJob(t, filepath.Join(testutil.RepoRoot(t), "trainer", "testdata", "hang.py"), 2)
	j.Python = "/usr/bin/python3"
	j.HangTimeout = time.Second
	res, err := j.fit(t, t.Context())
	var jerr *trainer.JobError
	require.ErrorAs(t, err, &jerr)
	assert.Equal(t, trainer.StateFailed, res.State)
	assert.Equal(t, "hung: no report() from any worker for 1s", jerr.Cause.Cause())
	assert.Equal(t, 0, jerr.Cause.Rank)
	require.Len(t, jerr.Failed, 1, "every worker hung")
	for _, w := range append(jerr.Failed, jerr.Cause) {
		stack := strings.Join(w.Traceback(), "\n")
		assert.Contains(t, stack, "(most recent call first)", "rank %d", w.Rank)
		assert.Contains(t, stack, "in wait_for_peer", "rank %d: the stack shows where it waits", w.Rank)
	}
}

// A group that cannot start on a node (here its log directory cannot be
// made; in the field a cgroup that cannot be created or a spawn that
// fails) is a failure like a worker's: it spends one of --max-failures and
// the job restarts, or it ends the job as a JobError naming the node.
func TestStartErrorIsARestartableFailure(t *testing.T) {
	for _, tt := range []struct {
		name        string
		maxFailures int
	}{
		{"restarted", 1},
		{"no budget", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			j := newJob(t, filepath.Join(testutil.RepoRoot(t), "trainer", "testdata", "dump_env.py"), 2)
			j.Python = "/usr/bin/python3"
			j.Name, j.MaxFailures = "start-fails-once", tt.maxFailures
			j.Env = append(j.Env, "OUT_DIR="+out)
			blocker := filepath.Join(j.ResultsDir, j.Name, "logs")
			require.NoError(t, os.MkdirAll(filepath.Dir(blocker), 0o755))
			require.NoError(t, os.WriteFile(blocker, nil, 0o644))
			// Events come one at a time, before the next attempt starts.
			j.onFirst(trainer.EventRestart, func() { assert.NoError(t, os.Remove(blocker)) })

			res, err := j.fit(t, t.Context())
			if tt.maxFailures == 0 {
				var jerr *trainer.JobError
				require.ErrorAs(t, err, &jerr)
				assert.Equal(t, trainer.StateFailed, res.State)
				assert.Contains(t, jerr.Cause.Cause(), "create log directory")
				assert.Contains(t, jerr.Cause.Cause(), "could not start on node")
				assert.Contains(t, jerr.NoRestart, "no restarts allowed")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, trainer.StateSucceeded, res.State)
			assert.Equal(t, 1, res.Restarts)
			restarts := j.ofType(trainer.EventRestart)
			require.Len(t, restarts, 1)
			assert.Contains(t, restarts[0].Message, "create log directory")
			assert.Contains(t, restarts[0].Message, "(failure 1 of --max-failures 1)")
		})
	}
}
