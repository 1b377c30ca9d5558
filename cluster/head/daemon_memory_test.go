package head

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/trainer"
)

// addEvent hands e to hj as the head's OnEvent does.
func addEvent(t testing.TB, hj *headJob, e trainer.Event) {
	t.Helper()
	hj.add(jobEvent(e), "", "")
}

// heldLogBytes is what hj holds of its log lines.
func heldLogBytes(hj *headJob) (n int) {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	for _, ev := range hj.events {
		if isLog(ev) {
			n += len(ev.EventJson)
		}
	}
	return n
}

// A job that prints big lines (progress bars, dumped tensors) costs the
// head a bounded number of bytes, however many lines it prints.
func TestHeadJobBoundsLogBytes(t *testing.T) {
	const bound = 8 << 20
	hj := &headJob{changed: make(chan struct{})}
	addEvent(t, hj, trainer.Event{Type: trainer.EventState, State: trainer.StateRunning})
	line := strings.Repeat("x", 64<<10)
	for i := range 400 { // 25 MiB of lines, with a report every ten
		addEvent(t, hj, trainer.Event{Type: trainer.EventLog, Rank: i % 2, Line: line})
		require.LessOrEqual(t, heldLogBytes(hj), bound+(65<<10), "after %d lines", i+1)
		if i%10 == 9 {
			addEvent(t, hj, trainer.Event{Type: trainer.EventReport, Rank: 0})
		}
	}
	addEvent(t, hj, trainer.Event{Type: trainer.EventLog, Rank: 0, Line: "the last"})
	all := hj.eventsFrom(0)
	assert.Contains(t, string(all[0].EventJson), `"Type":"state"`, "non-log events are kept")
	reports, notices := 0, 0
	for _, ev := range all {
		reports += strings.Count(string(ev.EventJson), `{"Type":"report"`)
		notices += strings.Count(string(ev.EventJson), `{"Type":"warning"`)
	}
	assert.Equal(t, 40, reports, "every report is kept")
	assert.Equal(t, 1, notices, "one notice stands for every line dropped")
	assert.Contains(t, string(all[len(all)-1].EventJson), `"Line":"the last"`, "the newest lines are kept")
}

// A watcher sends the batch it took outside the job's lock while the job
// goes on logging: dropping old lines must never rewrite that batch.
func TestHeadJobTrimLeavesWatchersBatchAlone(t *testing.T) {
	hj := &headJob{changed: make(chan struct{})}
	for range 100_000 {
		addEvent(t, hj, trainer.Event{Type: trainer.EventLog, Line: "small"})
	}
	hj.mu.Lock()
	batch := hj.eventsFrom(hj.next - 10)
	hj.mu.Unlock()
	want := make([]*clusterpb.JobEvent, len(batch))
	copy(want, batch)

	big := strings.Repeat("z", 64<<10)
	for range 200 { // past any bound, by count and by bytes
		addEvent(t, hj, trainer.Event{Type: trainer.EventLog, Line: big})
	}
	require.Less(t, len(hj.eventsFrom(0)), 100_200, "old lines were dropped")
	for i := range want {
		assert.True(t, want[i] == batch[i], "batch[%d] (event %d) was rewritten under its watcher", i, want[i].Index)
	}
}

// addJob registers a job on h as submit does, without running anything.
func addJob(h *Daemon, id string, state trainer.State) *headJob {
	hj := &headJob{id: id, name: "run-" + id, workers: 1, submitted: time.Now(), logDir: filepath.Join(h.results, "run-"+id, "logs"),
		cancel: func() {}, done: make(chan struct{}), changed: make(chan struct{}), state: state}
	close(hj.done)
	h.mu.Lock()
	h.jobs[id] = hj
	h.order = append(h.order, id)
	h.mu.Unlock()
	return hj
}

// end adds hj's last event, with its result, as the job's goroutine does.
func end(t testing.TB, hj *headJob, state trainer.State) {
	t.Helper()
	ev := jobEvent(trainer.Event{Type: trainer.EventState, State: state})
	var err error
	ev.ResultJson, err = json.Marshal(trainer.Result{Name: hj.name, JobID: hj.id, State: state})
	require.NoError(t, err)
	hj.add(ev, state, "")
}

// An ended job gives back what it held of its output, all but its last
// lines; `rtrain logs` (WatchJob) and the dashboard (JobEvents) still show
// its story, those lines, and where every line is.
func TestEndedJobReleasesItsOutput(t *testing.T) {
	h := startTestHead(t, Config{})
	h.endedGrace = time.Millisecond
	hj := addJob(h, "0123456789ab", trainer.StateRunning)
	addEvent(t, hj, trainer.Event{Type: trainer.EventState, State: trainer.StateRunning})
	line := strings.Repeat("progress ", 100)
	const lines = 5000 // 4.5 MB: under the running job's bound
	for i := range lines {
		addEvent(t, hj, trainer.Event{Type: trainer.EventLog, Rank: i % 2, Line: fmt.Sprintf("%d %s", i, line)})
	}
	addEvent(t, hj, trainer.Event{Type: trainer.EventWorkerExited, Rank: 1, Exit: &trainer.WorkerExit{Rank: 1}})
	end(t, hj, trainer.StateSucceeded)
	require.Greater(t, heldLogBytes(hj), 4<<20, "a running job keeps its lines")

	h.jobEnded(hj)
	require.Eventually(t, func() bool { return heldLogBytes(hj) <= endedLogBytes }, 10*time.Second, 5*time.Millisecond,
		"an ended job keeps %d bytes of lines at most", endedLogBytes)
	assert.Greater(t, heldLogBytes(hj), endedLogBytes/2, "and its last lines")

	wantNote := fmt.Sprintf("log lines of this job's output are no longer in the head's memory; every line is in %s on the head",
		filepath.Join(h.results, "run-0123456789ab", "logs", "rank_*.log"))
	check := func(t *testing.T, events []trainer.Event, res *trainer.Result) {
		t.Helper()
		require.NotNil(t, res, "the result comes with the last event")
		assert.Equal(t, trainer.StateSucceeded, res.State)
		require.NotEmpty(t, events)
		assert.Equal(t, trainer.EventState, events[0].Type, "the job's story is kept")
		var notes []string
		var last trainer.Event
		for _, e := range events {
			switch e.Type {
			case trainer.EventWarning:
				notes = append(notes, e.Message)
			case trainer.EventLog:
				last = e
			}
		}
		require.Len(t, notes, 1, "one notice stands for the lines that went")
		assert.Contains(t, notes[0], wantNote)
		assert.True(t, strings.HasPrefix(last.Line, fmt.Sprintf("%d ", lines-1)), "the last line is kept: %.20q", last.Line)
		assert.Equal(t, trainer.EventWorkerExited, events[len(events)-2].Type)
	}
	t.Run("rtrain logs", func(t *testing.T) {
		c, err := trainer.Dial(h.Addr().String(), auth.Security{Token: "t"})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		for _, follow := range []bool{false, true} {
			var events []trainer.Event
			res, err := c.Attach(t.Context(), hj.id, follow, func(e trainer.Event) { events = append(events, e) })
			require.NoError(t, err)
			check(t, events, res)
		}
	})
	t.Run("dashboard", func(t *testing.T) {
		events, next, res, _, ok := h.JobEvents(hj.id, 0, 0)
		require.True(t, ok)
		assert.Equal(t, lines+3, next)
		check(t, events, res)
	})
}

// The head remembers the newest maxEndedJobs ended jobs, and every job
// that has not ended.
func TestHeadForgetsTheOldestEndedJobs(t *testing.T) {
	h := startTestHead(t, Config{})
	running := addJob(h, "running", trainer.StateRunning)
	for i := range maxEndedJobs + 5 {
		hj := addJob(h, fmt.Sprintf("ended%05d", i), trainer.StateRunning)
		end(t, hj, trainer.StateFailed)
	}
	h.forgetEnded()

	assert.Equal(t, maxEndedJobs+1, len(h.summaries()), "jobs listed")
	assert.Same(t, running, h.find("running"))
	assert.Nil(t, h.find("ended00004"), "the oldest ended jobs are forgotten")
	assert.NotNil(t, h.find("ended00005"))
	assert.NotNil(t, h.find(fmt.Sprintf("ended%05d", maxEndedJobs+4)))
}
