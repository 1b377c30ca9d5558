package dashboard

import (
	"slices"
	"sync"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/trainer"
)

// Bounds on what is kept of a job: the log tail the page shows, and the
// points of each metric series (older points are thinned, see series.add).
const (
	logTail   = 200
	maxPoints = 1024
)

// Worker exit outcomes, the values of rtrain_worker_exits_total's label.
var outcomes = []string{"success", "failed", "oom", "stopped", "lost", "preempted"}

// outcome classifies a worker's exit: why it ended, not just its code.
func outcome(w *trainer.WorkerExit) string {
	switch {
	case w.Lost != "":
		return "lost"
	case w.Preempted:
		return "preempted"
	case w.Stopped:
		return "stopped"
	case w.Success():
		return "success"
	case w.OutOfMemory():
		return "oom"
	}
	return "failed"
}

// rank is one worker of a job as the page shows it.
type rank struct {
	Rank    int
	Node    string
	PID     int
	State   string // started, running or exited
	Reports int
	Exit    *trainer.WorkerExit
	Outcome string
	// Cause is the exception line of a failed worker, when it says more
	// than its exit.
	Cause string
}

// point is one value of a metric: X is the number of rank 0's report.
type point struct {
	X int
	Y float64
}

// series is one numeric metric of rank 0's reports. To bound memory it
// keeps the reports whose number is a multiple of stride, doubling stride
// (and dropping every other point) when full, so the points stay evenly
// spread; last is always the newest.
type series struct {
	Key    string
	points []point
	stride int
	last   point
}

func (s *series) add(p point) {
	s.last = p
	if p.X%s.stride != 0 {
		return
	}
	s.points = append(s.points, p)
	if len(s.points) > maxPoints {
		s.stride *= 2
		kept := s.points[:0]
		for _, q := range s.points {
			if q.X%s.stride == 0 {
				kept = append(kept, q)
			}
		}
		s.points = kept
	}
}

// all is the kept points and the newest.
func (s *series) all() []point {
	if n := len(s.points); n > 0 && s.points[n-1] == s.last {
		return slices.Clone(s.points)
	}
	return append(slices.Clone(s.points), s.last)
}

// logLine is one line of a rank's output.
type logLine struct {
	Rank   int
	Stream string
	Line   string
}

// jobState is what the dashboard knows of a job: its events folded so
// far. Only its owner (tracker) touches it, under mu.
type jobState struct {
	mu    sync.Mutex
	next  int // index of the next event to fold
	ended bool

	state    trainer.State
	message  string
	ranks    map[int]*rank
	reports0 int // rank 0's reports: the x of the charts
	series   []*series
	byKey    map[string]*series
	ckpts    []trainer.Checkpoint
	warnings []string
	logs     []logLine // ring of the last logTail lines, from logAt
	logAt    int
	result   *trainer.Result

	// Totals for /metrics: counters that only grow.
	reports, restarts int
	ckptBytes         int64
	ckptSeconds       float64
	exits             map[string]int
}

func newJobState() *jobState {
	return &jobState{ranks: map[int]*rank{}, byKey: map[string]*series{}, exits: map[string]int{}}
}

// catchUp folds the events src has past those folded already.
func (j *jobState) catchUp(src Source, id string) bool {
	if j.ended {
		return true
	}
	events, next, res, _, ok := src.JobEvents(id, j.next, 0)
	if !ok {
		return false
	}
	for _, e := range events {
		j.apply(e)
	}
	j.next = next
	if res != nil {
		j.result, j.ended = res, true
		if j.reports0 == 0 {
			// A job the head restored after a restart has no reports
			// among its events, only the history in its result.
			for _, m := range res.History {
				j.plot(m)
			}
		}
	}
	return true
}

func (j *jobState) apply(e trainer.Event) {
	switch e.Type {
	case trainer.EventState:
		j.state, j.message = e.State, e.Message
		if e.State == trainer.StateRunning {
			for _, r := range j.ranks {
				if r.State == "started" {
					r.State = "running"
				}
			}
		}
	case trainer.EventWorkerStarted:
		j.ranks[e.Rank] = &rank{Rank: e.Rank, Node: e.Node, PID: e.PID, State: "started"}
	case trainer.EventLog:
		l := logLine{Rank: e.Rank, Stream: e.Stream, Line: e.Line}
		if len(j.logs) < logTail {
			j.logs = append(j.logs, l)
		} else {
			j.logs[j.logAt] = l
			j.logAt = (j.logAt + 1) % logTail
		}
	case trainer.EventReport:
		j.reports++
		if r := j.ranks[e.Rank]; r != nil {
			r.Reports++
			if r.State == "started" {
				r.State = "running"
			}
		}
		if e.Rank == 0 {
			j.plot(e.Metrics)
		}
	case trainer.EventWorkerExited:
		if e.Exit == nil {
			return
		}
		o := outcome(e.Exit)
		j.exits[o]++
		r := &rank{Rank: e.Rank, Node: e.Exit.Node, PID: e.Exit.PID}
		if old := j.ranks[e.Rank]; old != nil {
			r = old
		}
		r.State, r.Exit, r.Outcome, r.Cause = "exited", e.Exit, o, ""
		if cause := e.Exit.Cause(); o != "success" && cause != e.Exit.Exit.String() {
			r.Cause = cause
		}
		j.ranks[e.Rank] = r
	case trainer.EventCheckpoint:
		if c := e.Checkpoint; c != nil {
			j.ckpts = append(j.ckpts, *c)
			j.ckptBytes += c.Bytes
			j.ckptSeconds += c.Took.Seconds()
		}
	case trainer.EventWarning:
		j.warnings = append(j.warnings, e.Message)
	case trainer.EventRestart:
		j.restarts++
		// The next attempt's workers start afresh; the charts go on.
		j.ranks = map[int]*rank{}
	}
}

// plot adds rank 0's next report to the charts' series.
func (j *jobState) plot(m pyshim.Metrics) {
	j.reports0++
	for _, k := range m.Keys {
		v, ok := checkpoint.MetricNumber(m.Values[k])
		if !ok {
			continue
		}
		s := j.byKey[k]
		if s == nil {
			s = &series{Key: k, stride: 1}
			j.byKey[k] = s
			j.series = append(j.series, s)
		}
		s.add(point{X: j.reports0, Y: v})
	}
}

// jobView is a consistent copy of a jobState, for a page or the API.
type jobView struct {
	Next        int
	Ended       bool
	State       trainer.State
	Message     string
	Ranks       []rank
	Charts      []chart
	Checkpoints []trainer.Checkpoint
	Warnings    []string
	Logs        []logLine
	Result      *trainer.Result
}

func (j *jobState) view() jobView {
	v := jobView{Next: j.next, Ended: j.ended, State: j.state, Message: j.message,
		Checkpoints: slices.Clone(j.ckpts), Warnings: slices.Clone(j.warnings), Result: j.result}
	for _, r := range j.ranks {
		v.Ranks = append(v.Ranks, *r)
	}
	slices.SortFunc(v.Ranks, func(a, b rank) int { return a.Rank - b.Rank })
	for _, s := range j.series {
		v.Charts = append(v.Charts, drawChart(s.Key, s.all()))
	}
	v.Logs = append(slices.Clone(j.logs[j.logAt:]), j.logs[:j.logAt]...)
	return v
}

// tracker holds the folded state of every job the dashboard was asked
// about, keyed by job id.
type tracker struct {
	src  Source
	mu   sync.Mutex
	jobs map[string]*jobState
}

// job brings id's state up to date and runs f on it; false when src does
// not know id.
func (t *tracker) job(id string, f func(*jobState)) bool {
	t.mu.Lock()
	j := t.jobs[id]
	if j == nil {
		j = newJobState()
		t.jobs[id] = j
	}
	t.mu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.catchUp(t.src, id) {
		t.mu.Lock()
		if t.jobs[id] == j && j.next == 0 {
			delete(t.jobs, id)
		}
		t.mu.Unlock()
		return false
	}
	f(j)
	return true
}

// forget drops the jobs src no longer lists.
func (t *tracker) forget(keep map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.jobs {
		if !keep[id] {
			delete(t.jobs, id)
		}
	}
}
