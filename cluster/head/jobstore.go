package head

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/trainer"
)

// jobStore keeps the head's job table on disk, so a head that restarts
// still knows every job it ran.
type jobStore struct {
	db *bolt.DB
}

var jobsBucket = []byte("jobs")

// jobRecord is one job as stored.
type jobRecord struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Group     string          `json:"group,omitempty"`
	State     trainer.State   `json:"state"`
	Message   string          `json:"message,omitempty"`
	Workers   int             `json:"workers"`
	Submitted time.Time       `json:"submitted"`
	Ended     time.Time       `json:"ended,omitzero"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     json.RawMessage `json:"error,omitempty"`
	// Params, Metric and Mode are the job's Config's; Best and
	// BestIteration its best value of Metric.
	Params        map[string]string `json:"params,omitempty"`
	Metric        string            `json:"metric,omitempty"`
	Mode          string            `json:"mode,omitempty"`
	Best          *float64          `json:"best,omitempty"`
	BestIteration int               `json:"best_iteration,omitempty"`
	// For a running job, what a head that starts again needs to adopt it:
	// the attempt's trainer.Adoption, the working directory it ships, the
	// next event's index, and how far into each node's group events the
	// head had got (GroupSeq + 1, by node).
	Adoption json.RawMessage  `json:"adoption,omitempty"`
	Workdir  *cluster.Workdir `json:"workdir,omitempty"`
	Next     int64            `json:"next,omitempty"`
	Seqs     map[string]int64 `json:"seqs,omitempty"`
	Restarts int              `json:"restarts,omitempty"`
	// Epoch counts the heads that adopted the job after the one that ran
	// it first; Bases[e] is the index epoch e's head numbered from.
	Epoch int64   `json:"epoch,omitempty"`
	Bases []int64 `json:"bases,omitempty"`
}

func openJobStore(dir string) (*jobStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("trainer: head state: %w", err)
	}
	path := filepath.Join(dir, "jobs.db")
	// A second head on the same state directory waits a moment, then
	// fails, rather than sharing the file.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("trainer: open the head's job table %s: %w (is another head running with this state directory?)", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(jobsBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("trainer: head job table: %w", err)
	}
	return &jobStore{db: db}, nil
}

func (s *jobStore) put(r jobRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(jobsBucket).Put([]byte(r.ID), b) })
}

// jobTable keeps the head's job records: bbolt in the state directory
// (jobStore), or etcd for heads with standbys (etcdTable).
type jobTable interface {
	put(r jobRecord) error
	close() error
}

var (
	_ jobTable = (*jobStore)(nil)
	_ jobTable = (*etcdTable)(nil)
)

// recover loads every stored job in submission order, marking as lost
// those that had not ended and cannot be adopted (no workers ran yet).
func (s *jobStore) recover(now time.Time) ([]jobRecord, error) {
	var out []jobRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(jobsBucket)
		var all []jobRecord
		if err := bk.ForEach(func(k, v []byte) error {
			var r jobRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("job %s: %w", k, err)
			}
			all = append(all, r)
			return nil
		}); err != nil {
			return err
		}
		var changed []jobRecord
		out, changed = settle(all, now)
		for _, r := range changed {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := bk.Put([]byte(r.ID), b); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// settle orders the records of a head that starts by submission and marks
// lost those that had not ended and cannot be adopted; changed are those.
func settle(recs []jobRecord, now time.Time) (out, changed []jobRecord) {
	for _, r := range recs {
		if !r.State.Done() && r.State != trainer.StateLost && r.Adoption == nil {
			r.Message = fmt.Sprintf("the head restarted while the job was %s, before its workers started; submit it again with --resume --name %s", r.State, r.Name)
			r.State, r.Ended = trainer.StateLost, now
			changed = append(changed, r)
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Submitted.Before(out[b].Submitted) })
	return out, changed
}

func (s *jobStore) close() error { return s.db.Close() }

// record is what the store keeps of hj.
func (hj *headJob) record() jobRecord {
	hj.mu.Lock()
	defer hj.mu.Unlock()
	r := jobRecord{ID: hj.id, Name: hj.name, Group: hj.group, State: hj.state, Message: hj.message, Workers: hj.workers, Submitted: hj.submitted, Ended: hj.ended,
		Params: hj.params, Metric: hj.best.Metric, Mode: hj.best.Mode, Best: hj.best.Best(), BestIteration: hj.best.Iteration, Restarts: hj.restarts,
		Epoch: hj.epoch, Bases: slices.Clone(hj.bases)}
	if !hj.state.Done() && hj.adoption != nil {
		r.Adoption, r.Workdir, r.Next, r.Seqs = hj.adoption, hj.workdir, hj.next, maps.Clone(hj.seqs)
	}
	if n := len(hj.events); n > 0 {
		last := hj.events[n-1]
		if last.ResultJson != nil {
			r.Result = last.ResultJson
			if last.Error != nil {
				r.Error, _ = json.Marshal(last.Error)
			}
		}
	}
	return r
}

// restored turns a stored job into an ended headJob whose one event is its
// end.
func restored(r jobRecord) *headJob {
	hj := &headJob{id: r.ID, name: r.Name, group: r.Group, params: r.Params, workers: r.Workers, submitted: r.Submitted, ended: r.Ended,
		state: r.State, message: r.Message, done: make(chan struct{}), changed: make(chan struct{}), cancel: func() {},
		best: trainer.BestTracker{Metric: r.Metric, Mode: r.Mode}}
	if r.Best != nil && r.BestIteration > 0 {
		hj.best.Value, hj.best.Iteration = *r.Best, r.BestIteration
	}
	close(hj.done)
	// The job's story is its end alone now: every earlier numbering
	// begins at it.
	hj.epoch = r.Epoch + 1
	hj.bases = make([]int64, hj.epoch+1)
	ev := jobEvent(trainer.Event{Type: trainer.EventState, Time: r.Ended, State: r.State, Message: r.Message})
	ev.ResultJson = r.Result
	if ev.ResultJson == nil {
		ev.ResultJson, _ = json.Marshal(trainer.Result{Name: r.Name, JobID: r.ID, State: r.State})
	}
	if r.Error != nil {
		var we clusterpb.JobError
		if json.Unmarshal(r.Error, &we) == nil {
			ev.Error = &we
		}
	} else if r.State == trainer.StateLost {
		ev.Error = &clusterpb.JobError{Kind: "other", Message: r.Message}
	}
	ev.Epoch = hj.epoch
	hj.events = []*clusterpb.JobEvent{ev}
	return hj
}

// adoptedJob is a stored job that was running, which this head adopts: it
// goes on from its state and its next event's index.
func adoptedJob(r jobRecord) *headJob {
	hj := &headJob{id: r.ID, name: r.Name, group: r.Group, params: r.Params, workers: r.Workers, submitted: r.Submitted,
		state: r.State, message: r.Message, done: make(chan struct{}), changed: make(chan struct{}), cancel: func() {},
		best: trainer.BestTracker{Metric: r.Metric, Mode: r.Mode}, restarts: r.Restarts,
		adoption: r.Adoption, workdir: r.Workdir, next: r.Next, seqs: maps.Clone(r.Seqs), adopting: true}
	if r.Best != nil && r.BestIteration > 0 {
		hj.best.Value, hj.best.Iteration = *r.Best, r.BestIteration
	}
	// This head numbers the job's events from where the table had got;
	// the one before may have numbered a few more, differently.
	hj.epoch = r.Epoch + 1
	hj.bases = make([]int64, hj.epoch+1)
	copy(hj.bases, r.Bases)
	hj.bases[hj.epoch] = r.Next
	var a trainer.Adoption
	if json.Unmarshal(r.Adoption, &a) == nil {
		hj.attempt, hj.nodes, hj.logDir = a.Attempt, a.Plan.Nodes(), ""
	}
	return hj
}
