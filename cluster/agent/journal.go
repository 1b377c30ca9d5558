package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/rtrain/rtrain/cluster"
)

// journal keeps a group's events in order, encoded, so that whoever
// follows the group can read them from any point: the stream that started
// it, or a head that attaches after it restarted or took over. The group
// runs whether anyone reads or not.
//
// Every event but a log line stays for the group's life: they are few,
// and a head that attaches rebuilds the attempt's state from them. Log
// lines go once the head has acknowledged them (ack); those not yet
// acknowledged are bounded by maxLogBytes, past which new lines are
// counted and dropped, their count said in one line when the head is
// back. Every line is also in the node's log files.
type journal struct {
	mu      sync.Mutex
	events  []journalEntry // events[i] has seq i+1
	logs    int            // bytes of log lines kept and not acknowledged
	acked   int64          // log lines before this seq are dropped
	dropped int            // log lines dropped over the bound, not yet said
	ended   bool
	changed chan struct{} // closed and replaced on each append and at the end
	// released holds the reports (by Seq) whose staged files the head
	// released: their checkpoints are committed.
	released map[int]bool
}

type journalEntry struct {
	data   []byte // nil: a log line dropped after its ack
	log    bool
	report int // the report's Seq, for a report with staged files; else -1
}

// maxLogBytes bounds the log lines a journal holds that the head has not
// acknowledged: a head away for minutes costs the node at most this.
const maxLogBytes = 64 << 20

func newJournal() *journal {
	return &journal{changed: make(chan struct{}), released: map[int]bool{}}
}

// append adds e; a log line over the bound is dropped and counted.
func (j *journal) append(e cluster.Event) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	isLog := e.Kind == cluster.WorkerLog
	if isLog && j.logs+len(b) > maxLogBytes {
		j.dropped++
		return
	}
	if j.dropped > 0 {
		note, _ := json.Marshal(cluster.Event{Kind: cluster.WorkerLog, NodeID: e.NodeID, Rank: e.Rank, Time: e.Time, Stream: "stderr",
			Line: fmt.Sprintf("rtrain: %d log lines of this node were dropped while no head read them; the node's log files have them all", j.dropped)})
		j.events = append(j.events, journalEntry{data: note, log: true, report: -1})
		j.logs += len(note)
		j.dropped = 0
	}
	report := -1
	if e.Kind == cluster.WorkerReport && e.Staged != "" {
		report = e.Report.Seq
	}
	j.events = append(j.events, journalEntry{data: b, log: isLog, report: report})
	if isLog {
		j.logs += len(b)
	}
	close(j.changed)
	j.changed = make(chan struct{})
}

// end marks the last event appended.
func (j *journal) end() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.ended = true
	close(j.changed)
	j.changed = make(chan struct{})
}

// ack drops the log lines before seq: the head has kept them.
func (j *journal) ack(seq int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := j.acked; i < min(seq-1, int64(len(j.events))); i++ {
		if e := &j.events[i]; e.log && e.data != nil {
			j.logs -= len(e.data)
			e.data = nil
		}
	}
	j.acked = max(j.acked, min(seq-1, int64(len(j.events))))
}

// release notes that report seq's staged files were released.
func (j *journal) release(report int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.released[report] = true
}

// sent is one event as read: its seq, its encoding, and whether its staged
// files were released.
type sent struct {
	seq      int64
	data     []byte
	released bool
}

// read returns the events from seq from on (dropped log lines skipped),
// waiting for one while none is there; done is true once the group has
// ended and every event has been read.
func (j *journal) read(ctx context.Context, from int64) (batch []sent, done bool, err error) {
	for {
		j.mu.Lock()
		for i := max(from, 1) - 1; i < int64(len(j.events)); i++ {
			e := j.events[i]
			if e.data == nil {
				continue
			}
			batch = append(batch, sent{seq: i + 1, data: e.data, released: e.report >= 0 && j.released[e.report]})
		}
		ended, wait := j.ended, j.changed
		next := int64(len(j.events)) + 1
		j.mu.Unlock()
		if len(batch) > 0 || (ended && max(from, 1) >= next) {
			return batch, ended && len(batch) == 0, nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}
