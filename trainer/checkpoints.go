package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/checkpoint/stage"
	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/pyshim"
)

// CheckpointConfig says which checkpoints a run keeps, as Ray Train's
// CheckpointConfig does.
type CheckpointConfig struct {
	// Keep is how many committed checkpoints to keep; 0 keeps all. The
	// latest is always kept, since a resumed run starts from it.
	Keep int
	// Score names the reported metric that ranks checkpoints for Keep and
	// for Result.Best. Empty: the newest are kept.
	Score string
	// Order is "max" (higher is better; the default) or "min".
	Order string
	// InFlight bounds the checkpoints staged on local disk and not yet
	// uploaded; report() waits for room beyond it. 0 means 2: one
	// uploading while the next is staged.
	InFlight int
	// RetryFor is how long a checkpoint whose upload fails is tried
	// again (storage restarting, a network blip) before the job fails
	// with a CheckpointError; training goes on meanwhile until InFlight
	// checkpoints wait. 0 means DefaultCheckpointRetry; negative never
	// retries.
	RetryFor time.Duration
}

// DefaultCheckpointRetry is CheckpointConfig.RetryFor's default.
const DefaultCheckpointRetry = 2 * time.Minute

func (c CheckpointConfig) retention() checkpoint.Retention {
	return checkpoint.Retention{Keep: c.Keep, Score: c.Score, Order: c.Order}
}

// Checkpoint is a committed checkpoint of a run.
type Checkpoint struct {
	// Index is its number within the run (the N of checkpoint_N).
	Index int
	// URI is where it is stored: s3://bucket/prefix/run/checkpoint_000003
	// or a local path.
	URI string
	// Metrics are rank 0's metrics of the report that made it.
	Metrics map[string]any
	// Score is its value of CheckpointConfig.Score, when it has one.
	Score *float64 `json:",omitempty"`
	// Bytes is the size of its files.
	Bytes int64
	Time  time.Time
	// Took is how long storing it took, from the last rank's report to
	// the manifest; zero for a checkpoint listed from storage.
	Took time.Duration `json:",omitempty"`
}

func checkpointOf(m checkpoint.Manifest, score string) Checkpoint {
	c := Checkpoint{Index: m.Index, URI: m.URI, Metrics: m.Metrics, Bytes: m.Size(), Time: m.Time}
	if s, ok := checkpoint.Score(m, score); ok && score != "" {
		c.Score = &s
	}
	return c
}

// CheckpointError is a job that failed because a checkpoint could not be
// stored: the run would not survive a failure, so it does not go on.
type CheckpointError struct {
	// Index is the checkpoint that was being committed.
	Index int
	Err   error
}

func (e *CheckpointError) Error() string {
	return fmt.Sprintf("checkpoint %d could not be stored: %v", e.Index, e.Err)
}

func (e *CheckpointError) Unwrap() error { return e.Err }

// openStorage opens the run's storage, takes the run's lease and settles
// where the run starts from, all before a worker starts, so bad storage,
// a run another job writes or a bad resume is a one-line error. On error
// nothing is left held.
func (j *job) openStorage(ctx context.Context) (err error) {
	loc := j.cfg.Storage
	if loc == "" {
		loc = j.resultsDir
	}
	s, err := checkpoint.Open(ctx, loc, j.cfg.S3)
	if err != nil {
		return invalid("storage: %w", err)
	}
	j.storage = s
	defer func() {
		if err != nil {
			j.closeStorage()
		}
	}()
	run, err := checkpoint.NewRun(s, j.res.Name)
	if err != nil {
		return invalid("%w", err)
	}
	run.Logger = j.log
	// Taken before anything is read, so that a second job of the run
	// neither sees a commit half done nor writes beside it, and it is
	// refused before it launches anything.
	if err := run.Lock(ctx, checkpoint.LeaseOptions{ID: j.id, Successor: j.adopted != nil}); err != nil {
		var lerr *checkpoint.LockedError
		if errors.As(err, &lerr) {
			return invalid("run %q is already being written by another rtrain fit: %w; wait for it to finish or pick another --name", j.res.Name, lerr)
		}
		return fmt.Errorf("trainer: %w", err)
	}
	j.ckptRun = run
	j.res.Storage = run.URI()
	if a := j.adopted; a != nil {
		// Its workers started already, from where the earlier head chose.
		j.next, j.restore = a.Next, a.Restore
		return nil
	}

	latest, err := run.Latest(ctx)
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	var from *checkpoint.Manifest
	var fromRun *checkpoint.Run
	switch {
	case j.cfg.RestartFrom != "":
		fromRun, from, err = openCheckpointURI(ctx, j.cfg.RestartFrom, j.cfg.S3, j.log)
		if err != nil {
			return invalid("--restart-from %s: %w", j.cfg.RestartFrom, err)
		}
	case j.cfg.ResumeExisting && latest != nil:
		fromRun, from = run, latest
	case j.cfg.ResumeFrom != "":
		fromRun, from, err = openCheckpointURI(ctx, j.cfg.ResumeFrom, j.cfg.S3, j.log)
		if err != nil {
			return invalid("--resume-from %s: %w", j.cfg.ResumeFrom, err)
		}
		if latest != nil && fromRun.URI() != run.URI() && !j.cfg.ResumeExisting {
			return invalid("run %q already has checkpoints in %s (latest %s); give --name a new run to start from %s", j.res.Name, run.URI(), latest.URI, from.URI)
		}
	case j.cfg.Resume:
		if latest == nil {
			return invalid("--resume: run %q has no committed checkpoint in %s; start it without --resume", j.res.Name, run.URI())
		}
		fromRun, from = run, latest
	case latest != nil:
		return invalid("run %q already has checkpoints in %s (latest %s); pass --resume to continue it, or choose another --name", j.res.Name, run.URI(), filepath.Base(latest.URI))
	}
	if j.next, err = run.NextIndex(ctx); err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	if from != nil {
		if err := j.download(ctx, fromRun, *from); err != nil {
			return fmt.Errorf("trainer: resume: %w", err)
		}
		j.res.ResumedFrom = j.restore.URI
	}
	return nil
}

// restoreDir, under the run's directory, holds the local copy of the
// checkpoint the workers start from.
const restoreDir = ".rtrain-restore"

// download copies checkpoint m of run to this machine for the workers to
// start from, replacing the copy of any earlier one. For the job's own
// run, a damaged m gives way to the newest intact checkpoint before it,
// with a warning: a resumed or restarted run goes on from a little further
// back rather than not at all. A checkpoint that --resume-from names is
// that one or none.
func (j *job) download(ctx context.Context, run *checkpoint.Run, m checkpoint.Manifest) error {
	root := filepath.Join(j.res.RunDir, restoreDir)
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	if run != j.ckptRun {
		dir := filepath.Join(root, filepath.Base(m.URI))
		if err := run.Download(ctx, m, dir); err != nil {
			return err
		}
		j.restore = &cluster.Restore{Dir: dir, URI: m.URI, Index: m.Index}
		return nil
	}
	res, err := run.Restore(ctx, m, root)
	if err != nil {
		return err
	}
	for _, d := range res.Skipped {
		j.log.Warn("damaged checkpoint skipped", "uri", d.Manifest.URI, "err", d.Err)
	}
	if len(res.Skipped) > 0 {
		var names []string
		for _, d := range res.Skipped {
			names = append(names, filepath.Base(d.Manifest.URI))
		}
		j.emit(Event{Type: EventWarning, Message: fmt.Sprintf("%s is damaged (%v); starting from %s, the newest intact checkpoint before it",
			strings.Join(names, ", "), res.Skipped[0].Err, filepath.Base(res.Manifest.URI))})
	}
	j.restore = &cluster.Restore{Dir: res.Dir, URI: res.Manifest.URI, Index: res.Manifest.Index}
	return nil
}

// openCheckpointURI opens the checkpoint a URI names: its run's storage is
// the URI less its last two elements (run, checkpoint_N).
func openCheckpointURI(ctx context.Context, uri string, opts checkpoint.S3Options, log *slog.Logger) (*checkpoint.Run, *checkpoint.Manifest, error) {
	loc, runName, index, err := SplitCheckpointURI(uri)
	if err != nil {
		return nil, nil, err
	}
	if index < 0 {
		return nil, nil, errors.New("not a checkpoint: want .../RUN/checkpoint_NNNNNN")
	}
	s, err := checkpoint.Open(ctx, loc, opts)
	if err != nil {
		return nil, nil, err
	}
	run, err := checkpoint.NewRun(s, runName)
	if err != nil {
		return nil, nil, err
	}
	run.Logger = log
	m, err := run.Get(ctx, index)
	if err != nil {
		return nil, nil, fmt.Errorf("no committed checkpoint there: %w", err)
	}
	return run, m, nil
}

// SplitCheckpointURI splits a run or checkpoint URI into the storage
// location, the run's name and the checkpoint index (-1 for a run URI):
// "s3://b/p/run/checkpoint_000003" is ("s3://b/p", "run", 3) and
// "/data/results/run" is ("/data/results", "run", -1).
func SplitCheckpointURI(uri string) (location, run string, index int, err error) {
	trimmed := strings.TrimRight(uri, "/")
	scheme, rest, isURL := strings.Cut(trimmed, "://")
	if !isURL {
		scheme, rest = "", trimmed
	}
	parts := strings.Split(rest, "/")
	index = -1
	if n := len(parts); n > 0 {
		if i, ok := parseCheckpointDir(parts[n-1]); ok {
			index, parts = i, parts[:n-1]
		}
	}
	// At least the storage root (a bucket, a directory) and the run.
	if len(parts) < 2 || parts[len(parts)-1] == "" {
		return "", "", 0, fmt.Errorf("%q names no run: want STORAGE/RUN or STORAGE/RUN/checkpoint_NNNNNN", uri)
	}
	run = parts[len(parts)-1]
	location = strings.Join(parts[:len(parts)-1], "/")
	if isURL {
		location = scheme + "://" + location
	} else if location == "" {
		location = "/"
	}
	return location, run, index, nil
}

func parseCheckpointDir(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, "checkpoint_")
	if !ok || len(digits) < 6 {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || fmt.Sprintf("checkpoint_%06d", n) != name {
		return 0, false
	}
	return n, true
}

// committer turns staged reports into committed checkpoints, one at a
// time and in report order, and prunes after each.
type committer struct {
	j        *job
	stager   *stage.Area
	world    int
	inFlight int

	pending map[int]*pendingReport // by Seq
	next    int                    // index of the next checkpoint
	queue   chan commitTask
	failed  chan error // one error, then closed by done
	// committed receives a value (dropped when one waits) after each
	// checkpoint is stored.
	committed chan struct{}
	done      chan struct{}
	// groups are the attempt's, set before the first report: those whose
	// node keeps its staged files until the commit are told to release
	// them after it.
	groups []cluster.GroupRunner
	// inStorage are the indices committed already: an adopted attempt's,
	// by the earlier head, whose reports come again.
	inStorage map[int]bool
}

type pendingReport struct {
	ranks   int
	metrics map[string]any
	staged  bool
}

type commitTask struct {
	seq, index int
	metrics    map[string]any
}

func (j *job) newCommitter(ctx context.Context, world int) (*committer, error) {
	inFlight := j.cfg.Checkpoint.InFlight
	if inFlight == 0 {
		inFlight = 2
	}
	stager, err := stage.New(filepath.Join(j.resultsDir, ".rtrain-staging", j.id), inFlight)
	if err != nil {
		return nil, fmt.Errorf("trainer: %w", err)
	}
	c := &committer{
		j: j, stager: stager, world: world, inFlight: inFlight,
		pending:   map[int]*pendingReport{},
		next:      j.next,
		queue:     make(chan commitTask, 64),
		failed:    make(chan error, 1),
		committed: make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	go c.upload(ctx)
	return c, nil
}

// report counts one worker's report; when every rank has made its Seq-th
// report and any of them attached files, that report's checkpoint is
// queued for upload.
func (c *committer) report(e cluster.Event) {
	p := c.pending[e.Report.Seq]
	if p == nil {
		p = &pendingReport{}
		c.pending[e.Report.Seq] = p
	}
	p.ranks++
	if e.Rank == 0 {
		p.metrics = e.Report.Metrics.Values
	}
	if e.Staged != "" || e.StagedReleased {
		p.staged = true
	}
	if p.ranks < c.world {
		return
	}
	delete(c.pending, e.Report.Seq)
	if !p.staged {
		return
	}
	c.queue <- commitTask{seq: e.Report.Seq, index: c.next, metrics: p.metrics}
	c.next++
}

// release frees report seq's staged files, here and on the nodes.
func (c *committer) release(seq int) {
	_ = c.stager.Release(seq)
	for _, g := range c.groups {
		if r, ok := g.(cluster.StagedReleaser); ok {
			r.ReleaseStaged(seq)
		}
	}
}

func (c *committer) upload(ctx context.Context) {
	defer close(c.done)
	var failed bool
	for t := range c.queue {
		if failed || ctx.Err() != nil {
			c.release(t.seq)
			continue
		}
		if c.inStorage[t.index] {
			c.j.log.Debug("checkpoint committed by the earlier head", "index", t.index)
			c.release(t.seq)
			continue
		}
		start := time.Now()
		m, err := c.commitRetrying(ctx, t)
		c.release(t.seq)
		if err != nil {
			if ctx.Err() == nil {
				failed = true
				c.failed <- &CheckpointError{Index: t.index, Err: err}
			}
			continue
		}
		ck := checkpointOf(m, c.j.cfg.Checkpoint.Score)
		ck.Took = time.Since(start)
		c.j.emit(Event{Type: EventCheckpoint, Checkpoint: &ck})
		select {
		case c.committed <- struct{}{}:
		default:
		}
	}
}

// commitRetrying commits t, trying again with backoff while the storage
// fails, for CheckpointConfig.RetryFor. A commit writes its manifest last,
// so an attempt cut short leaves nothing a reader would take for a
// checkpoint, and the next attempt writes every file again.
func (c *committer) commitRetrying(ctx context.Context, t commitTask) (checkpoint.Manifest, error) {
	budget := c.j.cfg.Checkpoint.RetryFor
	if budget == 0 {
		budget = DefaultCheckpointRetry
	}
	deadline := time.Now().Add(budget)
	wait := 500 * time.Millisecond
	for tries := 1; ; tries++ {
		m, err := c.commit(ctx, t)
		if err == nil {
			if tries > 1 {
				c.j.emit(Event{Type: EventWarning, Message: fmt.Sprintf("checkpoint %d stored after %d tries", t.index, tries)})
			}
			return m, nil
		}
		// Another writer's checkpoint at this index, or the run's lease
		// gone to another writer, is not a storage blip: it stays so.
		if errors.Is(err, checkpoint.ErrExists) || errors.Is(err, checkpoint.ErrLockLost) {
			return m, err
		}
		if ctx.Err() != nil || budget < 0 || time.Now().Add(wait).After(deadline) {
			return m, err
		}
		if tries == 1 {
			c.j.emit(Event{Type: EventWarning, Message: fmt.Sprintf("checkpoint %d: %v; retrying for up to %s while training goes on", t.index, err, budget)})
		}
		c.j.log.Debug("checkpoint upload failed; retrying", "index", t.index, "try", tries, "err", err)
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

func (c *committer) commit(ctx context.Context, t commitTask) (checkpoint.Manifest, error) {
	start := time.Now()
	m, err := c.j.ckptRun.Commit(ctx, t.index, c.stager.Dir(t.seq), t.metrics, c.world)
	if err != nil {
		return m, err
	}
	c.j.log.Debug("checkpoint committed", "uri", m.URI, "bytes", m.Size(), "took", time.Since(start))
	// A failed prune costs disk, not the run: say so and go on.
	if deleted, err := c.j.ckptRun.Prune(ctx, c.j.cfg.Checkpoint.retention()); err != nil {
		c.j.log.Warn("checkpoint retention", "err", err)
	} else if len(deleted) > 0 {
		c.j.log.Debug("checkpoints deleted by retention", "indices", deleted)
	}
	return m, nil
}

// close waits for the queued uploads (ctx ending cuts them short) and
// deletes the staging area. Reports that not every rank made are dropped.
func (c *committer) close() {
	close(c.queue)
	<-c.done
	for seq := range c.pending {
		_ = c.stager.Release(seq)
	}
	_ = c.stager.Close()
	// The parent is shared by the jobs of this results directory: it goes
	// only when empty.
	_ = os.Remove(filepath.Join(c.j.resultsDir, ".rtrain-staging"))
}

func ptr[T any](v T) *T { return &v }

// settle fills the Result's checkpoints from what storage holds now, so
// it never names one that retention deleted, and writes result.json. A
// job that launched nothing leaves no trace in storage.
func (j *job) settle(ctx context.Context, jobErr error) {
	if j.ckptRun == nil || !j.launched {
		return
	}
	// The job's context may be cancelled; the record of the run is still
	// worth a few seconds.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	ms, err := j.ckptRun.List(ctx)
	if err != nil {
		j.log.Warn("listing checkpoints for the result", "err", err)
		return
	}
	j.res.Latest = nil
	if len(ms) > 0 {
		j.res.Latest = ptr(checkpointOf(ms[len(ms)-1], j.cfg.Checkpoint.Score))
	}
	best, _ := checkpoint.Best(ms, j.cfg.Checkpoint.retention())
	j.res.Best = nil
	for _, m := range best {
		j.res.Best = append(j.res.Best, checkpointOf(m, j.cfg.Checkpoint.Score))
	}
	data, err := json.MarshalIndent(j.record(jobErr), "", "  ")
	if err != nil {
		j.log.Warn("result.json", "err", err)
		return
	}
	// A job that lost the run to another writer must not write that
	// writer's record.
	if err := j.ckptRun.LockErr(); errors.Is(err, checkpoint.ErrLockLost) {
		j.log.Warn("result.json not written", "err", err)
		return
	}
	if err := j.storage.PutBytes(ctx, j.res.Name+"/"+ResultFile, append(data, '\n')); err != nil {
		j.log.Warn("writing result.json", "err", err)
		return
	}
	j.res.ResultURI = j.storage.URI(j.res.Name + "/" + ResultFile)
}

// ResultFile is the name of the record Fit writes into the run's storage
// when the job ends.
const ResultFile = "result.json"

// runRecord is result.json. Checkpoints are named by their path within the
// run, so a run copied elsewhere still reads true.
type runRecord struct {
	Name        string             `json:"name"`
	State       State              `json:"state"`
	Error       string             `json:"error,omitempty"`
	Started     time.Time          `json:"started"`
	Seconds     float64            `json:"seconds"`
	WorldSize   int                `json:"world_size"`
	Metrics     pyshim.Metrics     `json:"metrics"`
	Reports     int                `json:"reports"`
	History     []pyshim.Metrics   `json:"history,omitempty"`
	Latest      *recordCheckpoint  `json:"latest_checkpoint,omitempty"`
	Best        []recordCheckpoint `json:"best_checkpoints,omitempty"`
	ResumedFrom string             `json:"resumed_from,omitempty"`
}

type recordCheckpoint struct {
	Path    string         `json:"path"`
	Index   int            `json:"index"`
	Score   *float64       `json:"score,omitempty"`
	Metrics map[string]any `json:"metrics"`
}

func (j *job) record(jobErr error) runRecord {
	r := runRecord{
		Name: j.res.Name, State: j.res.State, Started: j.res.Started,
		Seconds: time.Since(j.res.Started).Seconds(), WorldSize: len(j.res.Workers),
		Metrics: j.res.Metrics, Reports: j.res.Reports, History: j.res.History, ResumedFrom: j.res.ResumedFrom,
	}
	// A checkpoint of this run is named by its path in the run; one of
	// another run keeps its URI, since it lives elsewhere.
	if j.res.ResumedFrom != "" && filepath.Dir(j.res.ResumedFrom) == j.res.Storage {
		r.ResumedFrom = filepath.Base(j.res.ResumedFrom)
	}
	if jobErr != nil {
		r.Error = jobErr.Error()
	}
	rel := func(c Checkpoint) recordCheckpoint {
		return recordCheckpoint{Path: filepath.Base(c.URI), Index: c.Index, Score: c.Score, Metrics: c.Metrics}
	}
	if j.res.Latest != nil {
		r.Latest = ptr(rel(*j.res.Latest))
	}
	for _, c := range j.res.Best {
		r.Best = append(r.Best, rel(c))
	}
	return r
}

// closeStorage releases the run's lease and the storage's connections.
func (j *job) closeStorage() {
	if j.ckptRun != nil {
		// The job's context may be over; releasing the lease is still
		// worth a few seconds, or a resume waits for it to lapse.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := j.ckptRun.Unlock(ctx); err != nil {
			j.log.Warn("releasing the run's lease", "err", err)
		}
		cancel()
	}
	if c, ok := j.storage.(io.Closer); ok {
		_ = c.Close()
	}
}
