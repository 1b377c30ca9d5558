package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/trainer"
)

// A sweep's trials on a real head: `rtrain jobs --group` lists them with
// their params and the best of their metric, as JSON and as a table.
func TestSweepTrialsInJobs(t *testing.T) {
	state := t.TempDir()
	start := rtrain(t, "start", "--head", "--with-agent", "--host", "127.0.0.1", "--port", "0", "--dashboard-port", "-1", "--num-cpus", "2", "--state-dir", state)
	require.Equal(t, exitOK, start.run(t), start.stderr.String())
	t.Cleanup(func() { _ = rtrain(t, "stop", "--state-dir", state).run(t) })

	trials := []struct {
		name   string
		flags  []string
		scores []string
	}{
		{"trial-1", []string{"--param", "lr=0.1", "--param", "model/depth=4"}, []string{"0.2", "0.5", "0.4"}},
		{"trial-2", []string{"--param", "lr=0.01", "--param", "model/depth=4"}, []string{"0.3", "0.9"}},
		{"trial-3", []string{"--param", "lr=0.001", "--param", "model/depth=8"}, []string{"diverged"}},
	}
	for _, tr := range trials {
		args := append([]string{"fit", "--address", "auto", "--state-dir", state, "--group", "sw", "--name", tr.name,
			"--metric", "score", "--mode", "max"}, tr.flags...)
		fit := rtrain(t, append(append(args, "score.py", "--"), tr.scores...)...)
		fit.cmd.Dir = repo(t, "cmd", "rtrain", "testdata")
		require.Equal(t, exitOK, fit.run(t), fit.stderr.String())
	}
	other := rtrain(t, "fit", "--address", "auto", "--state-dir", state, "--name", "alone", "score.py", "--", "7")
	other.cmd.Dir = repo(t, "cmd", "rtrain", "testdata")
	require.Equal(t, exitOK, other.run(t), other.stderr.String())

	list := rtrain(t, "jobs", "--state-dir", state, "--group", "sw", "-o", "json")
	require.Equal(t, exitOK, list.run(t), list.stderr.String())
	var jobs []jobJSON
	require.NoError(t, json.Unmarshal(list.stdout.Bytes(), &jobs), list.stdout.String())
	require.Len(t, jobs, 3, "the group's jobs only")
	best := func(f float64) *float64 { return &f }
	for i, want := range []struct {
		params map[string]string
		best   *float64
		at     int
	}{
		{map[string]string{"lr": "0.1", "model/depth": "4"}, best(0.5), 2},
		{map[string]string{"lr": "0.01", "model/depth": "4"}, best(0.9), 2},
		{map[string]string{"lr": "0.001", "model/depth": "8"}, nil, 0},
	} {
		j := jobs[i]
		assert.Equal(t, trials[i].name, j.Name)
		assert.Equal(t, string(trainer.StateSucceeded), j.State, j.Name)
		assert.Equal(t, "sw", j.Group, j.Name)
		assert.Equal(t, want.params, j.Params, j.Name)
		assert.Equal(t, "score", j.Metric, j.Name)
		assert.Equal(t, "max", j.Mode, j.Name)
		assert.Equal(t, want.best, j.Best, j.Name)
		assert.Equal(t, want.at, j.BestIteration, j.Name)
	}
	var raw []map[string]any
	require.NoError(t, json.Unmarshal(list.stdout.Bytes(), &raw))
	assert.Equal(t, 0.5, raw[0]["best"])
	assert.EqualValues(t, 2, raw[0]["best_iteration"])
	assert.NotContains(t, raw[2], "best", "no report had the metric as a number")
	assert.NotContains(t, raw[2], "best_iteration")

	table := rtrain(t, "jobs", "--state-dir", state, "--group", "sw")
	require.Equal(t, exitOK, table.run(t), table.stderr.String())
	out := table.stdout.String()
	assert.Regexp(t, `JOB\s+GROUP\s+NAME\s+STATE\s+PARAMS\s+BEST\s+WORKERS`, out)
	assert.Regexp(t, `\strial-1\s+SUCCEEDED\s+lr=0.1,model/depth=4\s+score=0.5\s`, out)
	assert.Regexp(t, `\strial-2\s+SUCCEEDED\s+lr=0.01,model/depth=4\s+score=0.9\s`, out)
	assert.Regexp(t, `\strial-3\s+SUCCEEDED\s+lr=0.001,model/depth=8\s+-\s`, out)
	assert.NotContains(t, out, "alone")

	all := rtrain(t, "jobs", "--state-dir", state)
	require.Equal(t, exitOK, all.run(t), all.stderr.String())
	assert.Regexp(t, `\s-\s+alone\s+SUCCEEDED\s+-\s+-\s`, all.stdout.String(), "a job of no sweep, beside trials")
}

// The PARAMS and BEST columns are there only for trials, and a long set
// of params is cut.
func TestJobsTableOfTrials(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	printJobs(&b, []trainer.JobSummary{{ID: "j1", Name: "plain", State: trainer.StateRunning, Workers: 1, Submitted: t0}}, false)
	assert.NotContains(t, b.String(), "PARAMS", "no trials, no columns")
	b.Reset()
	printJobs(&b, []trainer.JobSummary{{ID: "j1", Group: "sw", Name: "plain", State: trainer.StateRunning, Workers: 1, Submitted: t0}}, true)
	assert.Regexp(t, `JOB\s+GROUP\s+NAME\s+STATE\s+PARAMS\s+BEST\s+WORKERS\s+ATTEMPTS\s+SUBMITTED\s+MESSAGE\n`, b.String(), "--group asks for them")
	assert.Regexp(t, `j1\s+sw\s+plain\s+RUNNING\s+-\s+-\s+1\s+1\s`, b.String())

	long := map[string]string{"optimizer/name": "adamw", "optimizer/lr": "0.000123", "optimizer/weight_decay": "0.01"}
	assert.Equal(t, "optimizer/lr=0.000123,optimizer/name=adamw,op...", paramsCell(long))
	assert.Equal(t, "a=1,b=", paramsCell(map[string]string{"b": "", "a": "1"}))
	f := 0.123456789
	assert.Equal(t, "loss=0.12346", bestCell(trainer.JobSummary{Metric: "loss", Best: &f}))
	assert.Equal(t, "-", bestCell(trainer.JobSummary{Metric: "loss"}))
}
