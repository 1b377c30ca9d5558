package trainer_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/trainer"
)

// s3Storage points j at a fresh bucket of srv.
func s3Storage(t *testing.T, j *job, srv *testutil.MinIOServer, endpoint string) {
	j.Storage = "s3://" + srv.NewBucket(t) + "/runs"
	j.S3 = checkpoint.S3Options{Endpoint: endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: "us-east-1", MaxRetries: 1}
}

func openRun(t *testing.T, j *trainer.Config, name string) *checkpoint.Run {
	t.Helper()
	s, err := checkpoint.Open(t.Context(), j.Storage, j.S3)
	require.NoError(t, err)
	run, err := checkpoint.NewRun(s, name)
	require.NoError(t, err)
	return run
}

// A job stopped after its first checkpoint and resumed with Resume starts
// at the epoch after the restored one and ends with the parameters of a
// run that was never interrupted.
func TestResumeIsBitExact(t *testing.T) {
	srv := testutil.MinIO(t)
	script := example(t, "train_rtrain.py")
	const epochs = "4"

	whole := t.TempDir()
	j := newJob(t, script, 2, "--epochs", epochs, "--out", whole)
	s3Storage(t, j, srv, srv.Endpoint)
	j.Name = "whole"
	_, err := j.fit(t, t.Context())
	require.NoError(t, err)

	// The first run is cancelled once its first checkpoint is stored.
	resumed := t.TempDir()
	first := newJob(t, script, 2, "--epochs", epochs, "--out", resumed)
	first.Storage, first.S3 = j.Storage, j.S3
	first.Name = "interrupted"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	first.onFirst(trainer.EventCheckpoint, cancel)
	res, err := first.fit(t, ctx)
	require.ErrorIs(t, err, trainer.ErrCancelled)
	require.NotNil(t, res.Latest, "the first checkpoint was committed")
	restored := res.Latest
	_, err = os.Stat(filepath.Join(resumed, "params_rank0.json"))
	require.ErrorIs(t, err, os.ErrNotExist, "the interrupted run must not have finished")

	second := newJob(t, script, 2, "--epochs", epochs, "--out", resumed)
	second.Storage, second.S3 = j.Storage, j.S3
	second.Name, second.Resume = "interrupted", true
	res, err = second.fit(t, t.Context())
	require.NoError(t, err)
	assert.Equal(t, restored.URI, res.ResumedFrom)

	reports := second.ofType(trainer.EventReport)
	require.NotEmpty(t, reports)
	restoredEpoch := restored.Metrics["epoch"].(float64)
	firstEpoch, err := reports[0].Metrics.Values["epoch"].(json.Number).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(restoredEpoch)+1, firstEpoch, "the resumed run starts after the restored epoch")

	for _, name := range []string{"params_rank0.json", "params_rank1.json"} {
		assert.Equal(t, string(readParams(t, filepath.Join(whole, name))), string(readParams(t, filepath.Join(resumed, name))),
			"%s: a resumed run must end exactly where an uninterrupted one does", name)
	}
	// The local copy of the restored checkpoint is gone with the job.
	_, err = os.Stat(filepath.Join(res.RunDir, ".rtrain-restore"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	// Checkpoint indices go on after the restored one.
	assert.Greater(t, res.Latest.Index, restored.Index)
}

// Every rank's shard of one report lands in one checkpoint; retention by
// score keeps the best and the latest; the result names only kept ones.
func TestShardedCheckpointsAndRetention(t *testing.T) {
	j := newJob(t, "testdata/big_checkpoints.py", 2)
	j.Env = append(j.Env, "SIZE_MB=1", "EPOCHS=4")
	j.Storage = filepath.Join(t.TempDir(), "store")
	j.Name = "scored"
	j.Checkpoint = trainer.CheckpointConfig{Keep: 2, Score: "score", Order: "max"}
	res, err := j.fit(t, t.Context())
	require.NoError(t, err)

	// Scores 3, 9, 1, 5 for checkpoints 1..4: keep the best two (2 and 4),
	// and 4 is the latest anyway.
	ms, err := openRun(t, &j.Config, "scored").List(t.Context())
	require.NoError(t, err)
	var kept []int
	for _, m := range ms {
		kept = append(kept, m.Index)
		var paths []string
		for _, f := range m.Files {
			paths = append(paths, f.Path)
		}
		assert.Equal(t, []string{"shard_0.bin", "shard_1.bin"}, paths, "checkpoint %d holds both ranks' shards", m.Index)
		assert.Equal(t, 2, m.WorldSize)
	}
	assert.Equal(t, []int{2, 4}, kept)
	assert.Len(t, j.ofType(trainer.EventCheckpoint), 4)

	require.NotNil(t, res.Latest)
	assert.Equal(t, 4, res.Latest.Index)
	require.Len(t, res.Best, 2)
	assert.Equal(t, 2, res.Best[0].Index)
	assert.Equal(t, 9.0, *res.Best[0].Score)

	// result.json names checkpoints by their path in the run.
	data, err := os.ReadFile(filepath.Join(j.Storage, "scored", trainer.ResultFile))
	require.NoError(t, err)
	var rec struct {
		State  string
		Latest struct{ Path string } `json:"latest_checkpoint"`
		Best   []struct {
			Path  string
			Score float64
		} `json:"best_checkpoints"`
	}
	require.NoError(t, json.Unmarshal(data, &rec))
	assert.Equal(t, "SUCCEEDED", rec.State)
	assert.Equal(t, "checkpoint_000004", rec.Latest.Path)
	require.Len(t, rec.Best, 2)
	assert.Equal(t, "checkpoint_000002", rec.Best[0].Path)

	// Nothing staged is left behind.
	staged, _ := os.ReadDir(filepath.Join(j.ResultsDir, ".rtrain-staging"))
	assert.Empty(t, staged)
}

// cutProxy forwards TCP to target until cut, counting the bytes it moves
// towards the server.
type cutProxy struct {
	ln    net.Listener
	up    atomic.Int64
	cutAt atomic.Int64 // Cut when up reaches it; 0: not armed
	// hookAt: call hook (once, in its own goroutine) when up reaches it.
	hookAt atomic.Int64
	hook   func()
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln}
	t.Cleanup(func() { p.Cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				s.Close()
				return
			}
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(countingWriter{s, p}, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

type countingWriter struct {
	w io.Writer
	p *cutProxy
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	up := c.p.up.Add(int64(n))
	if at := c.p.cutAt.Load(); at > 0 && up >= at {
		c.p.Cut()
	}
	if at := c.p.hookAt.Load(); at > 0 && up >= at && c.p.hookAt.CompareAndSwap(at, 0) {
		go c.p.hook()
	}
	return n, err
}

// After calls fn once n more bytes have gone towards the server.
func (p *cutProxy) After(n int64, fn func()) {
	p.hook = fn
	p.hookAt.Store(p.up.Load() + n)
}

// CutAfter arms a Cut once n more bytes have gone towards the server.
func (p *cutProxy) CutAfter(n int64) { p.cutAt.Store(p.up.Load() + n) }

func (p *cutProxy) Endpoint() string { return "http://" + p.ln.Addr().String() }

// Cut closes every connection and refuses new ones: the server is gone.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	_ = p.ln.Close()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

// Storage going away in the middle of an upload fails the job with the
// storage error as its root cause; the checkpoint being uploaded does not
// exist, the one before it is intact.
func TestStorageOutageMidUpload(t *testing.T) {
	srv := testutil.MinIO(t)
	proxy := newCutProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	j := newJob(t, "testdata/big_checkpoints.py", 2)
	j.Env = append(j.Env, "SIZE_MB=48", "EPOCHS=6", "PAUSE=0.2")
	s3Storage(t, j, srv, proxy.Endpoint())
	j.Name = "outage"
	j.Checkpoint.RetryFor = 2 * time.Second // the outage outlasts it
	// Cut once the next checkpoint's upload is under way.
	j.onFirst(trainer.EventCheckpoint, func() { proxy.CutAfter(8 << 20) })
	res, err := j.fit(t, t.Context())
	var cerr *trainer.CheckpointError
	require.True(t, errors.As(err, &cerr), "want a CheckpointError, got %v", err)
	assert.Equal(t, trainer.StateFailed, res.State)
	assert.Equal(t, 2, cerr.Index)
	assert.NotContains(t, err.Error(), "\n")

	// Through the server itself: checkpoint 1 is there and whole, 2 is not.
	direct := &job{Config: trainer.Config{Storage: j.Storage, S3: j.S3}}
	direct.S3.Endpoint = srv.Endpoint
	run := openRun(t, &direct.Config, "outage")
	ms, err := run.List(t.Context())
	require.NoError(t, err)
	require.Len(t, ms, 1)
	assert.Equal(t, 1, ms[0].Index)
	require.NoError(t, run.Download(t.Context(), ms[0], t.TempDir()), "checkpoint 1 downloads with every checksum right")
}

// The S3 server killed and restarted in the middle of an upload: the upload
// is retried, training goes on, and every checkpoint ends up committed and
// whole.
func TestStorageRestartMidUpload(t *testing.T) {
	srv := testutil.MinIO(t)
	proxy := newCutProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	j := newJob(t, "testdata/big_checkpoints.py", 2)
	j.Env = append(j.Env, "SIZE_MB=48", "EPOCHS=5", "PAUSE=0.2")
	s3Storage(t, j, srv, proxy.Endpoint())
	j.Name = "restart"
	restarted := make(chan struct{})
	var restartErr error
	// The server dies 8 MiB into the next checkpoint's upload.
	j.onFirst(trainer.EventCheckpoint, func() {
		proxy.After(8<<20, func() { restartErr = srv.Restart(); close(restarted) })
	})
	res, err := j.fit(t, t.Context())
	require.NoError(t, err, "the job survives the storage restart")
	<-restarted
	require.NoError(t, restartErr)
	assert.Equal(t, trainer.StateSucceeded, res.State)
	warnings := j.ofType(trainer.EventWarning)
	require.NotEmpty(t, warnings, "the failed upload is reported")
	assert.Contains(t, warnings[0].Message, "retrying")

	direct := &job{Config: trainer.Config{Storage: j.Storage, S3: j.S3}}
	direct.S3.Endpoint = srv.Endpoint
	run := openRun(t, &direct.Config, "restart")
	ms, err := run.List(t.Context())
	require.NoError(t, err)
	require.Len(t, ms, 5, "every checkpoint committed")
	for i, m := range ms {
		assert.Equal(t, i+1, m.Index)
		require.NoError(t, run.Download(t.Context(), m, t.TempDir()), "checkpoint %d downloads with every checksum right", m.Index)
	}
}

// A run name that already holds checkpoints is not overwritten by accident,
// and --resume needs something to resume.
func TestResumeRules(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	j := newJob(t, "testdata/big_checkpoints.py", 1)
	j.Env = append(j.Env, "SIZE_MB=0", "EPOCHS=1")
	j.Storage, j.Name = store, "taken"
	_, err := j.fit(t, t.Context())
	require.NoError(t, err)

	tests := []struct {
		name   string
		config func(*trainer.Config)
		want   string
	}{
		{"existing run without resume", func(c *trainer.Config) { c.Name = "taken" }, `run "taken" already has checkpoints`},
		{"resume with nothing to resume", func(c *trainer.Config) { c.Name, c.Resume = "fresh", true }, `--resume: run "fresh" has no committed checkpoint`},
		{"resume from a missing checkpoint", func(c *trainer.Config) {
			c.Name, c.ResumeFrom = "other", filepath.Join(store, "taken", "checkpoint_000009")
		}, "no committed checkpoint there"},
		{"unknown scheme", func(c *trainer.Config) { c.Storage = "gs://bucket/x" }, `storage "gs://bucket/x" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := j.Config
			cfg.OnEvent = nil
			tt.config(&cfg)
			tr, err := trainer.New(cfg, nil)
			require.NoError(t, err)
			res, err := tr.Fit(t.Context())
			require.ErrorIs(t, err, trainer.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n")
			assert.Empty(t, res.Workers, "nothing was launched")
		})
	}

	// Resuming from another run's checkpoint under a new name works.
	k := newJob(t, "testdata/big_checkpoints.py", 1)
	k.Env = append(k.Env, "SIZE_MB=0", "EPOCHS=1")
	k.Storage, k.Name, k.ResumeFrom = store, "branch", filepath.Join(store, "taken", "checkpoint_000001")
	res, err := k.fit(t, t.Context())
	require.NoError(t, err)
	assert.Equal(t, 1, res.Latest.Index, "a new run numbers its checkpoints from 1")

	// ResumeExisting: a run with checkpoints goes on from its latest,
	// ResumeFrom notwithstanding (Ray Train V2's rule); one without starts
	// from ResumeFrom.
	k.Name, k.ResumeFrom, k.ResumeExisting = "branch", filepath.Join(store, "taken", "checkpoint_000001"), true
	res, err = k.fit(t, t.Context())
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(store, "branch", "checkpoint_000001"), res.ResumedFrom, "its own latest")
	assert.Equal(t, 2, res.Latest.Index)
	k.Name = "new-branch"
	res, err = k.fit(t, t.Context())
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(store, "taken", "checkpoint_000001"), res.ResumedFrom, "a run of none starts from ResumeFrom")

	// RestartFrom: a run with checkpoints starts from another's, and
	// numbers on (PBT's exploit).
	k.Name, k.ResumeFrom, k.ResumeExisting, k.RestartFrom = "branch", "", false, filepath.Join(store, "taken", "checkpoint_000001")
	res, err = k.fit(t, t.Context())
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(store, "taken", "checkpoint_000001"), res.ResumedFrom)
	assert.Equal(t, 3, res.Latest.Index, "the run's own numbering goes on")
}

// S3 problems are one-line errors before any worker starts.
func TestBadS3StorageFailsBeforeLaunch(t *testing.T) {
	srv := testutil.MinIO(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	good := checkpoint.S3Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: "us-east-1", MaxRetries: 1}
	tests := []struct {
		name    string
		storage string
		opts    func(*checkpoint.S3Options)
		want    string
	}{
		{"missing bucket", "s3://no-such-bucket-here/x", nil, "no-such-bucket-here"},
		{"wrong credentials", "s3://" + srv.Bucket + "/x", func(o *checkpoint.S3Options) { o.SecretKey = "wrong" }, "refused access key"},
		{"unreachable endpoint", "s3://" + srv.Bucket + "/x", func(o *checkpoint.S3Options) { o.Endpoint = dead }, ln.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJob(t, "testdata/big_checkpoints.py", 1)
			j.Storage, j.S3 = tt.storage, good
			if tt.opts != nil {
				tt.opts(&j.S3)
			}
			res, err := j.fit(t, t.Context())
			require.ErrorIs(t, err, trainer.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n")
			assert.Empty(t, res.Workers)
		})
	}
}

// Two jobs started with one run name at once: the second is refused
// before it launches anything, with a line that says what to do, and the
// first runs on undisturbed, its result.json its own. Without the run's
// lease both trained, both committed checkpoint 1, and the loser retried
// "already exists" until it failed and overwrote result.json.
func TestSecondWriterOfARunIsRefused(t *testing.T) {
	first := newJob(t, "testdata/big_checkpoints.py", 1)
	first.Env = append(first.Env, "SIZE_MB=1", "EPOCHS=3")
	first.Name = "shared"
	first.Checkpoint.RetryFor = 5 * time.Second // the old failure, quickly
	second := newJob(t, "testdata/big_checkpoints.py", 1)
	second.Env = append(second.Env, "SIZE_MB=1", "EPOCHS=3")
	second.Name, second.ResultsDir = first.Name, first.ResultsDir

	// The second starts while the first's worker runs and nothing is
	// committed yet: the first waits in its event callback meanwhile.
	var secondRes *trainer.Result
	var secondErr error
	first.onFirst(trainer.EventWorkerStarted, func() { secondRes, secondErr = second.fit(t, t.Context()) })
	res, err := first.fit(t, t.Context())

	t.Logf("the second job: %v", secondErr)
	require.ErrorIs(t, secondErr, trainer.ErrInvalidConfig)
	assert.Contains(t, secondErr.Error(), `run "shared" is already being written by another rtrain fit`)
	assert.Contains(t, secondErr.Error(), "pick another --name")
	assert.NotContains(t, secondErr.Error(), "\n")
	assert.ErrorIs(t, secondErr, checkpoint.ErrLocked)
	assert.Empty(t, secondRes.Workers, "the second job launched nothing")

	require.NoError(t, err, "the first job runs on")
	require.NotNil(t, res.Latest)
	assert.Equal(t, 3, res.Latest.Index)
	data, err := os.ReadFile(filepath.Join(first.ResultsDir, "shared", trainer.ResultFile))
	require.NoError(t, err)
	var rec struct{ State string }
	require.NoError(t, json.Unmarshal(data, &rec))
	assert.Equal(t, "SUCCEEDED", rec.State, "result.json is the first job's")

	// The lease goes with the job: the run can be resumed at once.
	third := newJob(t, "testdata/big_checkpoints.py", 1)
	third.Env = append(third.Env, "SIZE_MB=1", "EPOCHS=1")
	third.Name, third.ResultsDir, third.Resume = first.Name, first.ResultsDir, true
	_, err = third.fit(t, t.Context())
	require.NoError(t, err)
}

// A checkpoint index that another writer committed first is final: the
// job fails at once with a CheckpointError rather than retrying a commit
// that can never succeed for its whole RetryFor.
func TestCommitAlreadyExistsIsFinal(t *testing.T) {
	j := newJob(t, "testdata/big_checkpoints.py", 1)
	j.Env = append(j.Env, "SIZE_MB=1", "EPOCHS=3")
	j.Storage = filepath.Join(t.TempDir(), "store")
	j.Name = "raced"
	j.Checkpoint.RetryFor = 20 * time.Second
	// A writer that takes no lease (an older rtrain) commits checkpoint 2
	// under the job's feet, once the job has committed 1.
	var foreignErr error
	j.onFirst(trainer.EventCheckpoint, func() {
		_, foreignErr = openRun(t, &j.Config, "raced").Commit(t.Context(), 2, t.TempDir(), nil, 1)
	})
	start := time.Now()
	res, err := j.fit(t, t.Context())
	require.NoError(t, foreignErr)
	var cerr *trainer.CheckpointError
	require.True(t, errors.As(err, &cerr), "want a CheckpointError, got %v", err)
	assert.Equal(t, 2, cerr.Index)
	assert.ErrorIs(t, err, checkpoint.ErrExists)
	assert.Equal(t, trainer.StateFailed, res.State)
	for _, w := range j.ofType(trainer.EventWarning) {
		assert.NotContains(t, w.Message, "retrying", "an existing checkpoint is not retried")
	}
	assert.Less(t, time.Since(start), j.Checkpoint.RetryFor, "the job failed without waiting out RetryFor")
}

// A resumed run whose latest checkpoint fails its digest starts from the
// newest intact one before it, and says so; the damaged checkpoint is
// left as it is, and new ones are numbered after it.
func TestResumeFallsBackPastDamagedCheckpoint(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	j := newJob(t, "testdata/big_checkpoints.py", 1)
	j.Env = append(j.Env, "SIZE_MB=1", "EPOCHS=3")
	j.Storage, j.Name = store, "damaged"
	_, err := j.fit(t, t.Context())
	require.NoError(t, err)

	shard := filepath.Join(store, "damaged", "checkpoint_000003", "shard_0.bin")
	b, err := os.ReadFile(shard)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x01
	require.NoError(t, os.WriteFile(shard, b, 0o644))

	k := newJob(t, "testdata/big_checkpoints.py", 1)
	k.Env = append(k.Env, "SIZE_MB=1", "EPOCHS=1")
	k.Storage, k.Name, k.Resume = store, "damaged", true
	res, err := k.fit(t, t.Context())
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(store, "damaged", "checkpoint_000002"), res.ResumedFrom)
	var said []string
	for _, w := range k.ofType(trainer.EventWarning) {
		said = append(said, w.Message)
	}
	t.Logf("warnings: %q", said)
	require.NotEmpty(t, said, "the fallback is reported")
	assert.Contains(t, strings.Join(said, "\n"), "checkpoint_000003 is damaged")
	assert.Contains(t, strings.Join(said, "\n"), "checkpoint_000002")

	after, err := os.ReadFile(shard)
	require.NoError(t, err)
	assert.Equal(t, b, after, "the damaged checkpoint is left as it was")
	ms, err := openRun(t, &k.Config, "damaged").List(t.Context())
	require.NoError(t, err)
	var kept []int
	for _, m := range ms {
		kept = append(kept, m.Index)
	}
	assert.Equal(t, []int{1, 2, 3, 4}, kept, "the new checkpoint comes after the damaged one")
}
