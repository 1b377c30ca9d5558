package dashboard_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/trainer"
)

// fakeSource is a Source whose methods are its fields.
type fakeSource struct {
	status    func() trainer.ClusterStatus
	jobEvents func(job string, from, limit int) ([]trainer.Event, int, *trainer.Result, <-chan struct{}, bool)
}

func (f fakeSource) Status() trainer.ClusterStatus { return f.status() }
func (f fakeSource) JobEvents(job string, from, limit int) ([]trainer.Event, int, *trainer.Result, <-chan struct{}, bool) {
	return f.jobEvents(job, from, limit)
}

// fakeJob is a job's event log that a test can add to.
type fakeJob struct {
	mu      sync.Mutex
	events  []trainer.Event
	res     *trainer.Result
	changed chan struct{}
	// waiting, when set, is sent to when a caller found no new event.
	waiting chan struct{}
}

func newFakeJob(res *trainer.Result, events ...trainer.Event) *fakeJob {
	return &fakeJob{events: events, res: res, changed: make(chan struct{})}
}

func (j *fakeJob) add(e trainer.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
	close(j.changed)
	j.changed = make(chan struct{})
}

func (j *fakeJob) from(from, limit int) ([]trainer.Event, int, *trainer.Result, <-chan struct{}, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	batch := append([]trainer.Event(nil), j.events[min(from, len(j.events)):]...)
	if limit > 0 && len(batch) > limit {
		batch = batch[:limit]
	}
	if len(batch) == 0 && j.waiting != nil {
		select {
		case j.waiting <- struct{}{}:
		default:
		}
	}
	// As the head does, the result comes with the last event only.
	var res *trainer.Result
	if len(batch) > 0 && from+len(batch) == len(j.events) {
		res = j.res
	}
	return batch, from + len(batch), res, j.changed, true
}

func metrics(kv ...any) pyshim.Metrics {
	m := pyshim.Metrics{Values: map[string]any{}}
	for i := 0; i < len(kv); i += 2 {
		m.Keys = append(m.Keys, kv[i].(string))
		m.Values[kv[i].(string)] = kv[i+1]
	}
	return m
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func score(f float64) *float64 { return &f }

// custom is the custom resources s names ("name=qty,...").
func custom(s string) sched.Custom {
	c, err := sched.ParseCustom(s)
	if err != nil {
		panic(err)
	}
	return c
}

// fakeCluster is a fake cluster: two nodes (one dead) and three jobs, one
// running (j1), one queued (j2), one failed (j3).
func fakeCluster() (fakeSource, map[string]*fakeJob) {
	jobs := map[string]*fakeJob{
		"j1": newFakeJob(nil,
			trainer.Event{Type: trainer.EventState, State: trainer.StatePending},
			trainer.Event{Type: trainer.EventWorkerStarted, Rank: 0, Node: "n1", PID: 100},
			trainer.Event{Type: trainer.EventWorkerStarted, Rank: 1, Node: "n1", PID: 101},
			trainer.Event{Type: trainer.EventState, State: trainer.StateRunning, Message: "2 workers on 1 node"},
			trainer.Event{Type: trainer.EventLog, Rank: 0, Stream: "stdout", Line: "hello <b>world</b>"},
			trainer.Event{Type: trainer.EventReport, Rank: 0, Metrics: metrics("epoch", json.Number("0"), "loss", 1.0)},
			trainer.Event{Type: trainer.EventReport, Rank: 1, Metrics: metrics("epoch", json.Number("0"), "loss", 1.1)},
			trainer.Event{Type: trainer.EventReport, Rank: 0, Metrics: metrics("epoch", json.Number("1"), "loss", 0.5, "note", "slow")},
			trainer.Event{Type: trainer.EventCheckpoint, Checkpoint: &trainer.Checkpoint{Index: 1, URI: "/results/train/checkpoint_000001", Bytes: 2048, Took: 1500 * time.Millisecond, Score: score(0.5), Time: t0}},
			trainer.Event{Type: trainer.EventReport, Rank: 0, Metrics: metrics("epoch", json.Number("2"), "loss", json.Number("0.25"))},
			trainer.Event{Type: trainer.EventCheckpoint, Checkpoint: &trainer.Checkpoint{Index: 2, URI: "/results/train/checkpoint_000002", Bytes: 1024, Took: 500 * time.Millisecond, Time: t0}},
			trainer.Event{Type: trainer.EventLog, Rank: 1, Stream: "stderr", Line: "a warning"},
		),
		"j3": newFakeJob(&trainer.Result{Name: "broken", JobID: "j3", State: trainer.StateFailed},
			trainer.Event{Type: trainer.EventState, State: trainer.StatePending},
			trainer.Event{Type: trainer.EventWorkerStarted, Rank: 0, Node: "n1", PID: 200},
			trainer.Event{Type: trainer.EventWorkerStarted, Rank: 1, Node: "n1", PID: 201},
			trainer.Event{Type: trainer.EventWorkerExited, Rank: 1, Exit: &trainer.WorkerExit{Rank: 1, Node: "n1", PID: 201,
				Exit: launcher.Exit{Code: 1}, Tail: []string{"Traceback (most recent call last):", `  File "x.py", line 1`, "ValueError: boom"}}},
			trainer.Event{Type: trainer.EventWorkerExited, Rank: 0, Exit: &trainer.WorkerExit{Rank: 0, Node: "n1", PID: 200,
				Exit: launcher.Exit{Code: -1, Signal: syscall.SIGTERM, Stopped: true}}},
			trainer.Event{Type: trainer.EventState, State: trainer.StateFailed, Message: "rank 1 failed (exit code 1): ValueError: boom"},
		),
	}
	status := trainer.ClusterStatus{
		Version: "test", HeartbeatTimeout: 5 * time.Second,
		Nodes: []trainer.NodeStatus{
			{Node: sched.Node{ID: "n1", Addr: "10.0.0.1", Total: sched.Resources{CPU: 8, GPU: 4, MemoryBytes: 16 << 30, Custom: custom("licence=2")}},
				Free: sched.Resources{CPU: 6, GPU: 2, MemoryBytes: 8 << 30, Custom: custom("licence=0.5")}, FreeGPUs: []int{2, 3},
				State: trainer.NodeAlive, HeartbeatAge: 400 * time.Millisecond,
				GPUStats: []discover.GPUStat{{Index: 0, Utilization: 0.75, MemoryUsed: 1 << 30, MemoryTotal: 40 << 30},
					{Index: 1, Utilization: -1, MemoryTotal: 40 << 30}}},
			{Node: sched.Node{ID: "n2", Addr: "10.0.0.2", Total: sched.Resources{CPU: 4, MemoryBytes: 8 << 30}},
				Free: sched.Resources{CPU: 4, MemoryBytes: 8 << 30}, State: trainer.NodeDead, HeartbeatAge: 12 * time.Second},
		},
		Jobs: []trainer.JobSummary{
			{ID: "j1", Name: "train", State: trainer.StateRunning, Message: "2 workers on 1 node", Workers: 2, Submitted: t0},
			{ID: "j2", Name: "queued", State: trainer.StatePending, Message: "waiting for resources: needs 8 GPUs, the cluster has 4", Workers: 8,
				Submitted: t0.Add(time.Millisecond), Queued: true, Reason: "needs 8 GPUs, the cluster has 4"},
			{ID: "j3", Name: "broken", State: trainer.StateFailed, Message: "rank 1 failed (exit code 1): ValueError: boom", Workers: 2,
				Submitted: t0.Add(2 * time.Millisecond), Ended: t0.Add(5 * time.Second)},
		},
	}
	jobs["j2"] = newFakeJob(nil, trainer.Event{Type: trainer.EventState, State: trainer.StatePending, Message: "waiting for resources"})
	return sourceOf(status, jobs), jobs
}

// sourceOf is a Source of status and, by job id, the jobs' events.
func sourceOf(status trainer.ClusterStatus, jobs map[string]*fakeJob) fakeSource {
	return fakeSource{
		status: func() trainer.ClusterStatus { return status },
		jobEvents: func(job string, from, limit int) ([]trainer.Event, int, *trainer.Result, <-chan struct{}, bool) {
			j := jobs[job]
			if j == nil {
				return nil, from, nil, nil, false
			}
			return j.from(from, limit)
		},
	}
}

const token = "s3cret-token"

// get fetches path from srv with the token as a bearer, or without when
// bearer is "".
func get(t *testing.T, srv *httptest.Server, path, bearer string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
	require.NoError(t, err)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return do(t, srv.Client(), req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

var figureRE = regexp.MustCompile(`(?s)<figure class="chart" data-metric="([^"]*)">.*?<polyline[^>]*points="([^"]*)"`)

// chartPoints is, for each chart of a job page, the number of points of
// its polyline.
func chartPoints(page string) map[string]int {
	out := map[string]int{}
	for _, m := range figureRE.FindAllStringSubmatch(page, -1) {
		out[m[1]] = len(strings.Fields(m[2]))
	}
	return out
}
