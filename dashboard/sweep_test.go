package dashboard_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/trainer"
)

// reports are rank 0's reports of score, as events.
func reports(scores ...float64) []trainer.Event {
	var out []trainer.Event
	for _, s := range scores {
		out = append(out, trainer.Event{Type: trainer.EventReport, Rank: 0, Metrics: metrics("score", s)})
	}
	return out
}

// fakeSweep is a cluster with the sweep sw of four trials, as the head
// summarizes them: a (best score 0.5), b (best 0.9, the sweep's best), c
// (pending, no report yet) and d (restored after a head restart: its
// reports only in its result's history); and one job of no group.
func fakeSweep() fakeSource {
	running := trainer.Event{Type: trainer.EventState, State: trainer.StateRunning}
	jobs := map[string]*fakeJob{
		"a": newFakeJob(nil, append([]trainer.Event{running}, reports(0.2, 0.5, 0.4)...)...),
		"b": newFakeJob(nil, append([]trainer.Event{running}, reports(0.3, 0.9)...)...),
		"c": newFakeJob(nil, trainer.Event{Type: trainer.EventState, State: trainer.StatePending}),
		"d": newFakeJob(&trainer.Result{Name: "trial-d", JobID: "d", State: trainer.StateLost,
			History: []pyshim.Metrics{metrics("score", 0.1), metrics("score", 0.6)}},
			trainer.Event{Type: trainer.EventState, State: trainer.StateLost}),
		"x": newFakeJob(nil, append([]trainer.Event{running}, reports(5)...)...),
	}
	trial := func(id, lr string, best *float64, at int, state trainer.State) trainer.JobSummary {
		return trainer.JobSummary{ID: id, Name: "trial-" + id, Group: "sw", State: state, Workers: 1, Attempts: 1,
			Submitted: t0.Add(time.Duration(len(id)) * time.Second), Params: map[string]string{"lr": lr, "model/depth": "4"},
			Metric: "score", Mode: trainer.ModeMax, Best: best, BestIteration: at}
	}
	status := trainer.ClusterStatus{Version: "test", Jobs: []trainer.JobSummary{
		trial("a", "0.1", score(0.5), 2, trainer.StateRunning),
		trial("b", "0.01", score(0.9), 2, trainer.StateRunning),
		trial("c", "0.001", nil, 0, trainer.StatePending),
		trial("d", "1", score(0.6), 2, trainer.StateLost),
		{ID: "x", Name: "alone", State: trainer.StateRunning, Workers: 1, Submitted: t0},
	}}
	return sourceOf(status, jobs)
}

var sweepLineRE = regexp.MustCompile(`<polyline class="line (best|trial)" fill="none" data-job="([^"]*)" points="([^"]*)"><title>([^<]*)</title>`)

// The sweep page lists a group's trials with their params and best, and
// draws every trial's metric on one chart, the best trial last and
// marked; the cluster page and a trial's page link to it.
func TestSweepPage(t *testing.T) {
	srv := serve(t, fakeSweep())
	resp, body := get(t, srv, "/sweep/sw", token)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, want := range []string{
		"<h1>Sweep sw</h1>", "4 trials", "max score",
		`<tr data-job="b" class="best">`, `<a href="/jobs/b">trial-b</a> <span class="tag">best</span>`,
		`<tr data-job="a">`, `<code>lr=0.1</code> <code>model/depth=4</code>`,
		"<td>score=0.5</td><td>2</td>", "<td>score=0.9</td><td>2</td>",
		`<span class="state PENDING">PENDING</span>`,
		"<h2>score over training_iteration</h2>",
		`text-anchor="end">iteration 3</text>`,
	} {
		assert.Contains(t, body, want)
	}
	assert.Equal(t, 1, strings.Count(body, `class="tag">best`), "one best trial")
	assert.NotContains(t, body, "alone", "a job of no group is no trial")

	lines := sweepLineRE.FindAllStringSubmatch(body, -1)
	var got []string
	points := map[string]int{}
	for _, l := range lines {
		got = append(got, l[1]+" "+l[2]+" "+l[4])
		points[l[2]] = len(strings.Fields(l[3]))
	}
	assert.Equal(t, []string{"trial a trial-a", "trial d trial-d", "best b trial-b"}, got, "a line per trial that reported, the best last")
	assert.Equal(t, map[string]int{"a": 3, "b": 2, "d": 2}, points, "every report; d's from its history")
	// One scale for all: score 0.1 (d's first) is the bottom, 0.9 (b's
	// second) the top; iteration 1 the left, 3 the right.
	assert.Contains(t, body, `data-job="b" points="56.0,98.5 203.0,10.0"`)
	assert.Contains(t, body, `<circle class="dot" cx="203.0" cy="10.0" r="3"/>`, "the best point")

	t.Run("unknown", func(t *testing.T) {
		resp, body := get(t, srv, "/sweep/nope", token)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		assert.Contains(t, body, `no sweep "nope" on this cluster`)
	})
	t.Run("cluster page", func(t *testing.T) {
		_, body := get(t, srv, "/", token)
		assert.Contains(t, body, `<td><a href="/jobs/a">a</a></td><td><a href="/sweep/sw">sw</a></td><td>trial-a</td>`)
		assert.Contains(t, body, `<td><a href="/jobs/x">x</a></td><td></td><td>alone</td>`)
	})
	t.Run("trial page", func(t *testing.T) {
		_, body := get(t, srv, "/jobs/b", token)
		assert.Contains(t, body, `a trial of sweep <a href="/sweep/sw">sw</a> · <code>lr=0.01</code> · <code>model/depth=4</code> · best score=0.9 at iteration 2`)
		_, body = get(t, srv, "/jobs/c", token)
		assert.Contains(t, body, "no score reported yet")
		_, body = get(t, srv, "/jobs/x", token)
		assert.NotContains(t, body, `id="trial"`)
	})
	t.Run("status api", func(t *testing.T) {
		resp, body := get(t, srv, "/api/status", token)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, body, `"group":"sw","params":{"lr":"0.01","model/depth":"4"},"metric":"score","mode":"max","best":0.9,"best_iteration":2`)
	})
}

// A sweep whose trials name no metric has its table and no chart.
func TestSweepPageWithoutAMetric(t *testing.T) {
	status := trainer.ClusterStatus{Jobs: []trainer.JobSummary{
		{ID: "a", Name: "trial-a", Group: "plain", State: trainer.StateRunning, Submitted: t0, Params: map[string]string{"seed": "1"}},
	}}
	srv := serve(t, sourceOf(status, map[string]*fakeJob{"a": newFakeJob(nil, reports(1, 2)...)}))
	resp, body := get(t, srv, "/sweep/plain", token)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "<code>seed=1</code>")
	assert.Contains(t, body, "The trials name no metric to chart")
	assert.NotContains(t, body, "<svg")
	assert.NotContains(t, body, `class="best"`)
}
