package head

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/trainer"
)

// A job's events as the head keeps them for whoever watches, bounded in
// bytes while it runs and after it ends.

// headJob is a job the head runs: its events, kept for whoever watches.
type headJob struct {
	id, name  string
	group     string
	params    map[string]string
	workers   int
	submitted time.Time
	cancel    context.CancelFunc
	done      chan struct{}
	// logDir holds the job's rank_<N>.log files on the head, every line.
	logDir string

	mu       sync.Mutex
	events   []*clusterpb.JobEvent
	changed  chan struct{} // closed and replaced on each event
	state    trainer.State
	message  string
	ended    time.Time
	restarts int
	// best follows the job's Config.Metric over rank 0's reports.
	best trainer.BestTracker
	// next is the index of the next event; events may have gaps where old
	// log lines were dropped, so an event's place is its Index.
	next int64
	// logBytes is what the log lines in events cost; dropped holds the
	// notice in events of the lines dropped, with their count.
	logBytes int
	dropped  map[*clusterpb.JobEvent]int

	// What the job table keeps for a head that adopts the job: the
	// running attempt's trainer.Adoption as JSON, the working directory,
	// and, by node, the seq after the last group event passed on. attempt
	// and nodes are the attempt's; adopting is set while a head that
	// started again follows workers an earlier one started.
	adoption  json.RawMessage
	workdir   *cluster.Workdir
	seqs      map[string]int64
	attempt   int
	nodes     []string
	adopting  bool
	persisted time.Time
	// epoch counts the heads that adopted the job before this one;
	// bases[e] is the index epoch e's head numbered from (see servedFrom).
	epoch int64
	bases []int64
}

// servedFrom is where a WatchJob from index from, in epoch's numbering,
// begins. A head that adopted the job since numbered its events from
// where the job table had got, which may be short of where the one
// before it got: from that base on, the same index may be another event,
// so those are served again and the client tells what it had by each
// group event's seq.
func (hj *headJob) servedFrom(from, epoch int64) int64 {
	from = max(from, 0)
	if epoch >= 0 && epoch < hj.epoch && int(epoch)+1 < len(hj.bases) {
		return min(from, hj.bases[epoch+1])
	}
	return from
}

// What the head keeps of a job's log lines in memory, for `rtrain logs`,
// WatchJob and the dashboard; each rank's log file on the head keeps them
// all. Every other event stays: they are few, and they are the job's story.
const (
	// maxJobLogBytes bounds the lines of a running job: past it, the
	// oldest go until half of it is left, so a job that logs for weeks, or
	// prints megabytes of progress bars, costs the head at most this.
	maxJobLogBytes = 8 << 20
	// endedLogBytes is what an ended job keeps, its newest lines: its end,
	// where a traceback is, for the dashboard's log tail and `rtrain logs`.
	// A small job's whole output fits.
	endedLogBytes = 64 << 10
	// endedLogGrace is how long an ended job keeps all it held, so that a
	// watcher still sending them (`rtrain fit --address`, `rtrain logs
	// -f`) gets every line.
	endedLogGrace = time.Minute
	// maxEndedJobs bounds the ended jobs the head remembers: the newest
	// stay, for `rtrain jobs`, `rtrain logs` and the dashboard. The job
	// table (Config.StateDir) and the log files keep the others.
	maxEndedJobs = 1000
	// eventOverhead is about what an event costs the head beyond its
	// JSON: the message, its slot and the pointer to it.
	eventOverhead = 96
)

// jobEvent is e as the head keeps and sends it: its JSON, and its type as
// the event's kind.
func jobEvent(e trainer.Event) *clusterpb.JobEvent {
	b, _ := json.Marshal(e)
	return &clusterpb.JobEvent{EventJson: b, Kind: string(e.Type), GroupSeq: e.GroupSeq}
}

// isLog reports whether ev is a log line, by its kind.
func isLog(ev *clusterpb.JobEvent) bool { return trainer.EventType(ev.Kind) == trainer.EventLog }

func logCost(ev *clusterpb.JobEvent) int { return len(ev.EventJson) + eventOverhead }

// eventsFrom is the events with Index >= from.
func (hj *headJob) eventsFrom(from int64) []*clusterpb.JobEvent {
	i := sort.Search(len(hj.events), func(i int) bool { return hj.events[i].Index >= from })
	return hj.events[i:]
}

// reported folds rank 0's report e into the job's best.
func (hj *headJob) reported(e trainer.Event) {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	hj.best.Report(e.Metrics)
}

// addFrom adds ev, which came from node's worker group when it has a
// GroupSeq, and says whether the job table is due a write. How far into
// the group's events the head got moves with the next index, under one
// lock, so that the table never has the one without the other.
func (hj *headJob) addFrom(node string, ev *clusterpb.JobEvent, state trainer.State, msg string) (due bool) {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	if ev.GroupSeq > 0 {
		if hj.seqs == nil {
			hj.seqs = map[string]int64{}
		}
		hj.seqs[node] = ev.GroupSeq + 1
		due = time.Since(hj.persisted) > persistEvery
	}
	hj.addLocked(ev, state, msg)
	return due
}

func (hj *headJob) add(ev *clusterpb.JobEvent, state trainer.State, msg string) {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	hj.addLocked(ev, state, msg)
}

func (hj *headJob) addLocked(ev *clusterpb.JobEvent, state trainer.State, msg string) {
	ev.Index, ev.Epoch = hj.next, hj.epoch
	hj.next++
	hj.events = append(hj.events, ev)
	if isLog(ev) {
		hj.logBytes += logCost(ev)
		if hj.logBytes > maxJobLogBytes {
			hj.trimLogs(maxJobLogBytes / 2)
		}
	}
	if ev.ResultJson != nil {
		// With the last event, in the same critical section: a watcher
		// that sees the job ended has its result in the batch.
		hj.ended = time.Now()
	}
	if state != "" {
		hj.state, hj.message = state, msg
	}
	close(hj.changed)
	hj.changed = make(chan struct{})
}

// trimLogs drops the oldest log lines until those left cost at most keep
// bytes. One notice, a warning that says how many lines went and where
// they all are, stands for all the job ever dropped, at the index of the
// last: a reader that had not read them all learns of it, one that had
// reads nothing twice; the events around them stay in order. It fills a
// new slice: a watcher may be sending from the old one, outside the lock.
// hj.mu is held.
func (hj *headJob) trimLogs(keep int) {
	cut, kept := 0, 0 // the log lines before cut go
	for i := len(hj.events) - 1; i >= 0; i-- {
		ev := hj.events[i]
		if !isLog(ev) {
			continue
		}
		if kept+logCost(ev) > keep {
			cut = i + 1
			break
		}
		kept += logCost(ev)
	}
	if cut == 0 {
		return
	}
	events := make([]*clusterpb.JobEvent, 0, len(hj.events)-cut+64)
	var last *clusterpb.JobEvent // the newest line dropped, or the notice
	n := 0
	for i, ev := range hj.events {
		switch {
		case i < cut && isLog(ev):
			last, n = ev, n+1
		case hj.dropped[ev] > 0:
			// The notice of an earlier trim: this one's stands for its
			// lines too.
			last, n = ev, n+hj.dropped[ev]
		default:
			events = append(events, ev)
		}
	}
	note := hj.notice(last, n)
	at := sort.Search(len(events), func(i int) bool { return events[i].Index > note.Index })
	hj.events = slices.Insert(events, at, note)
	hj.dropped, hj.logBytes = map[*clusterpb.JobEvent]int{note: n}, kept
}

// notice stands for n log lines dropped from memory, the last of them last.
func (hj *headJob) notice(last *clusterpb.JobEvent, n int) *clusterpb.JobEvent {
	var at struct{ Time time.Time }
	_ = json.Unmarshal(last.EventJson, &at)
	are := "are"
	if n == 1 {
		are = "is"
	}
	note := jobEvent(trainer.Event{Type: trainer.EventWarning, Time: at.Time,
		Message: fmt.Sprintf("%s of this job's output %s no longer in the head's memory; every line is in %s on the head",
			text.Plural(n, "log line"), are, filepath.Join(hj.logDir, "rank_*.log"))})
	note.Index, note.Epoch = last.Index, last.Epoch
	return note
}

// release drops what an ended job holds of its output, but its last lines.
func (hj *headJob) release() {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	hj.trimLogs(endedLogBytes)
}

// jobEnded, once hj's last event is out, releases hj's output after the
// grace period (or as the head stops), and forgets the oldest ended jobs.
func (h *Daemon) jobEnded(hj *headJob) {
	h.forgetEnded()
	h.wg.Go(func() {
		t := time.NewTimer(h.endedGrace)
		defer t.Stop()
		select {
		case <-t.C:
			hj.release()
		case <-h.ctx.Done():
		}
	})
}

// forgetEnded forgets all but the newest maxEndedJobs ended jobs.
func (h *Daemon) forgetEnded() {
	h.mu.Lock()
	defer h.mu.Unlock()
	ended := 0
	keep := make([]bool, len(h.order))
	for i := len(h.order) - 1; i >= 0; i-- {
		keep[i] = true
		if h.jobs[h.order[i]].summaryState().Done() {
			ended++
			keep[i] = ended <= maxEndedJobs
		}
	}
	if ended <= maxEndedJobs {
		return
	}
	order := make([]string, 0, len(h.order)-(ended-maxEndedJobs))
	for i, id := range h.order {
		if keep[i] {
			order = append(order, id)
		} else {
			delete(h.jobs, id)
		}
	}
	h.order = order
}

func (hj *headJob) summary() *clusterpb.JobSummary {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	s := &clusterpb.JobSummary{Id: hj.id, Name: hj.name, Group: hj.group, State: string(hj.state), Message: hj.message,
		Workers: int32(hj.workers), SubmittedUnixMs: hj.submitted.UnixMilli(), Attempts: int32(hj.restarts + 1),
		Params: hj.params, Metric: hj.best.Metric, Mode: hj.best.Mode, Best: hj.best.Best(), BestIteration: int32(hj.best.Iteration)}
	if !hj.ended.IsZero() {
		s.EndedUnixMs = hj.ended.UnixMilli()
	}
	return s
}
