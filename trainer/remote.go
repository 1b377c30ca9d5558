package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/internal/workdir"
)

// Client talks to a cluster's head: it submits jobs and follows them, and
// reads and drains the cluster. With several heads' addresses it sends
// each call to the leader, and finds it again when it moves
// (remote_reconnect.go). Its methods may be called at once from several
// goroutines.
type Client struct {
	// Reconnect bounds how long a call looks for the leader when its head
	// cannot be reached, broke the call off or is a standby, from the
	// first such failure: Attach reconnects for up to Reconnect when its
	// stream breaks, each call tries the other heads for as long. 0 is
	// DefaultReconnect; negative: no retry, a call returns its head's
	// error. A client no head has answered yet gives up after one try of
	// each address: nothing runs there. Set it before the first call.
	Reconnect time.Duration

	sec auth.Security
	// list is the addresses as given, comma-separated, for what the user
	// reads.
	list string

	mu sync.Mutex
	// addrs is the heads' addresses, as given, then leaders that standbys
	// named (moveOn); cur is the one calls go to.
	addrs   []string
	cur     int
	conns   map[string]*grpc.ClientConn
	reached bool // a head has answered a call
	closed  bool
}

// Dial makes a client of the head at addr, or of the cluster whose heads
// are at addr, HOST:PORT,HOST:PORT (SplitAddresses); the token comes from
// sec or $RTRAIN_TOKEN. It connects to none: the first call does.
func Dial(addr string, sec auth.Security) (*Client, error) {
	addrs, err := SplitAddresses(addr)
	if err != nil {
		return nil, err
	}
	if sec.Token == "" {
		sec.Token = os.Getenv(auth.TokenEnv)
	}
	c := &Client{sec: sec, list: strings.Join(addrs, ","), addrs: addrs, conns: map[string]*grpc.ClientConn{}}
	// The first address's connection now: what is wrong with sec is
	// Dial's error.
	if _, _, err := c.leader(); err != nil {
		return nil, err
	}
	return c, nil
}

// Addr is the address of the head the client's calls go to now: the
// first given, until a call finds the leader elsewhere.
func (c *Client) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[c.cur]
}

// Close closes the connections.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for addr, conn := range c.conns {
		errs = append(errs, conn.Close())
		delete(c.conns, addr)
	}
	return errors.Join(errs...)
}

// call runs fn against the leader until it succeeds or search gives up;
// it returns the address of the head that answered last.
func (c *Client) call(ctx context.Context, fn func(clusterpb.HeadClient) error) (string, error) {
	s := search{c: c}
	for {
		addr, head, err := c.leader()
		if err != nil {
			return addr, err
		}
		if err = fn(head); err == nil {
			c.answered()
			return addr, nil
		}
		if !s.again(ctx, addr, err) {
			return addr, err
		}
	}
}

// err is the error of what, a call that failed at the head at addr; one
// that found no head to serve it names every address.
func (c *Client) err(what, addr string, err error) error {
	var ms *maybeSubmitted
	if errors.As(err, &ms) {
		return fmt.Errorf("%s at %s: %w", what, addr, err)
	}
	if _, ok := failover(err); ok {
		addr = c.list
	}
	return fmt.Errorf("%s at %s: %w", what, addr, auth.RemoteError(err))
}

// Submitted is a job the head accepted.
type Submitted struct {
	JobID, Name string
	// Files and Bytes are what was shipped of the working directory.
	Files int
	Bytes int64
}

// FunctionFile is the name Config.Function's file has in the working
// directory shipped to a cluster's nodes.
const FunctionFile = ".rtrain-function.pkl"

// Submit checks cfg, packs its working directory and hands the job to the
// head. It returns once the head has it; Attach follows it.
func (c *Client) Submit(ctx context.Context, cfg Config) (*Submitted, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir := cfg.WorkingDir
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return nil, fmt.Errorf("trainer: %w", err)
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("trainer: %w", err)
	}
	var rel string
	opts := workdir.Options{MaxBytes: cfg.WorkingDirLimit}
	if cfg.Function != "" {
		opts.Extra = []workdir.ExtraFile{{Name: FunctionFile, Path: cfg.Function}}
	} else {
		script, err := filepath.Abs(cfg.Script)
		if err != nil {
			return nil, fmt.Errorf("trainer: %w", err)
		}
		rel, err = filepath.Rel(dir, script)
		if err != nil || !filepath.IsLocal(rel) {
			return nil, invalid("script %s is outside the working directory %s, which is what gets shipped to the nodes; run from the script's project or pass --working-dir", cfg.Script, dir)
		}
		rel = filepath.ToSlash(rel)
	}
	ar, err := workdir.Pack(ctx, dir, opts)
	if errors.Is(err, workdir.ErrTooLarge) {
		return nil, invalid("%w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("trainer: pack the working directory: %w", err)
	}
	body, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("trainer: %w", err)
	}
	hdr := &clusterpb.SubmitJobHeader{ConfigJson: body, Script: rel, Workdir: cluster.ManifestOf(ar)}
	var rep *clusterpb.SubmitJobReply
	addr, err := c.call(ctx, func(head clusterpb.HeadClient) error {
		r, err := submit(ctx, head, hdr, ar)
		rep = r
		return err
	})
	if limit, ok := cluster.WorkdirLimit(err); ok {
		return nil, invalid("%w", tooLargeForHead(ctx, dir, ar, limit, addr))
	}
	if err != nil {
		return nil, c.err("submit the job", addr, err)
	}
	return &Submitted{JobID: rep.JobId, Name: rep.Name, Files: ar.Files, Bytes: ar.Size}, nil
}

// submit sends the job to head, then its working directory in chunks. A
// job is no call to repeat blindly: once its stream is open, the head may
// have taken it even though its reply never came, so an error that breaks
// it off then is a *maybeSubmitted, which no Client retries. Only a
// stream that never opened, or a standby's refusal, says no leader has it.
func submit(ctx context.Context, head clusterpb.HeadClient, hdr *clusterpb.SubmitJobHeader, ar *workdir.Archive) (*clusterpb.SubmitJobReply, error) {
	stream, err := head.SubmitJob(ctx)
	if err != nil {
		return nil, err
	}
	err = stream.Send(&clusterpb.SubmitJobRequest{Job: hdr})
	if err == nil {
		err = cluster.SendArchive(bytes.NewReader(ar.Data), func(chunk []byte) error {
			return stream.Send(&clusterpb.SubmitJobRequest{WorkdirChunk: chunk})
		})
	}
	var rep *clusterpb.SubmitJobReply
	if err == nil || errors.Is(err, io.EOF) {
		// After io.EOF from Send, the head has ended the call: this says why.
		rep, err = stream.CloseAndRecv()
	}
	if _, ok := failover(err); ok && !errors.Is(err, cluster.ErrNotLeader) && ctx.Err() == nil {
		return nil, &maybeSubmitted{err: err}
	}
	return rep, err
}

// maybeSubmitted is a job's submission that broke off after its stream
// opened: the head may have the job.
type maybeSubmitted struct{ err error }

func (e *maybeSubmitted) Error() string {
	return "the call broke off before the head replied (" + cause(e.err) + "), so it may have the job: `rtrain jobs` shows whether it does before you submit it again"
}

func (e *maybeSubmitted) Unwrap() error { return e.err }

// tooLargeForHead is the error for a working directory that the head at
// addr refused as over its limit: Pack's, had it been held to that limit,
// which names the largest entries.
func tooLargeForHead(ctx context.Context, dir string, ar *workdir.Archive, limit int64, addr string) error {
	var tl *workdir.TooLargeError
	if _, err := workdir.Pack(ctx, dir, workdir.Options{MaxBytes: limit}); !errors.As(err, &tl) {
		tl = &workdir.TooLargeError{Dir: dir, Size: ar.Size, Limit: limit, Ignore: workdir.DefaultIgnore}
	}
	tl.Head = addr
	return tl
}

// Attach follows job (an id or a run name) from its first event, calling
// onEvent for each, until it ends; it returns as Fit does. With follow
// false it returns after the events so far, with a nil Result if the job
// has not ended. Cancelling ctx stops following, not the job.
//
// When its head is lost (down, restarting, now a standby), Attach looks
// for the leader (search) and follows on from the first event it has not
// had, so that it misses none and repeats none, for up to Reconnect; it
// tells onEvent, in an EventWarning of its own, that it lost the head and
// that it reconnected, once each an outage.
func (c *Client) Attach(ctx context.Context, job string, follow bool, onEvent func(Event)) (*Result, error) {
	w := &watch{c: c, job: job, follow: follow, onEvent: onEvent, wasReached: c.hasReached()}
	return w.run(ctx)
}

// watch is one Attach.
type watch struct {
	c       *Client
	job     string
	follow  bool
	onEvent func(Event)
	// wasReached: a head had answered the client before this Attach, so
	// one that cannot be reached now is lost.
	wasReached bool

	next int64 // the index of the first event not yet had
	// epoch is the numbering next is in (clusterpb.JobEvent.Epoch), and
	// seqs how far into each node's group events this attempt's had got:
	// a head that adopted the job serves again, numbered anew, events
	// had from the one before, and tells them by these.
	epoch    int64
	seqs     map[string]int64
	accepted bool // a head has taken one of this Attach's streams
	// lostAt is the head an outage began at ("" when there is none);
	// told says whether onEvent was told of it.
	lostAt string
	told   bool
}

func (w *watch) run(ctx context.Context) (*Result, error) {
	s := search{c: w.c}
	for {
		addr, head, err := w.c.leader()
		if err != nil {
			return nil, err
		}
		res, done, err := w.stream(ctx, head, addr, &s)
		if done {
			return res, err
		}
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: %w", ErrCancelled, context.Cause(ctx))
		case status.Code(err) == codes.NotFound && w.lostAt != "" && (w.accepted || w.wasReached):
			return nil, fmt.Errorf("trainer: follow job %s: the head at %s, reached after the one at %s was lost, does not know the job: %w", w.job, addr, w.lostAt, auth.RemoteError(err))
		}
		if _, ok := failover(err); ok {
			if w.lostAt == "" {
				w.lostAt = addr
			}
			if !w.told && (w.accepted || w.wasReached || s.past(w.c.count())) {
				w.warn(fmt.Sprintf("lost the head at %s (%s); reconnecting", addr, cause(err)))
				w.told = true
			}
		}
		if !s.again(ctx, addr, err) {
			return nil, w.giveUp(ctx, addr, err)
		}
	}
}

// stream follows the job on one WatchJob stream of head, at addr. done
// says the job's events are all had, with Attach's result; otherwise err
// says why the stream ended.
func (w *watch) stream(ctx context.Context, head clusterpb.HeadClient, addr string, s *search) (res *Result, done bool, err error) {
	// The stream ends with the call: a failed one leaves nothing behind.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := head.WatchJob(sctx, &clusterpb.WatchJobRequest{Job: w.job, From: w.next, Follow: w.follow, Epoch: w.epoch})
	if err != nil {
		return nil, false, err
	}
	// The head's headers say it took the stream; a refusal has none (a
	// head that sends none before the first event is taken by that).
	if md, _ := stream.Header(); md != nil {
		w.took(addr, s)
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if !w.follow {
				return nil, true, nil
			}
			return nil, false, errEndedEarly
		}
		if err != nil {
			return nil, false, err
		}
		w.took(addr, s)
		var e Event
		if err := json.Unmarshal(m.EventJson, &e); err != nil {
			return nil, true, fmt.Errorf("trainer: event from the head: %w", err)
		}
		if !w.fresh(m, e) {
			continue
		}
		// New: the head serves.
		s.reset()
		if w.onEvent != nil {
			w.onEvent(e)
		}
		if m.ResultJson != nil {
			var res Result
			if err := json.Unmarshal(m.ResultJson, &res); err != nil {
				return nil, true, fmt.Errorf("trainer: result from the head: %w", err)
			}
			return &res, true, jobErrorFromWire(m.Error)
		}
	}
}

// took records that the head at addr took a stream: an outage, if one
// was under way, is over.
// fresh says whether m, which is e, is an event this Attach had not had,
// and moves on past it. In one numbering (m.Epoch), an index had is an
// event had. A head that adopted the job numbers anew from where the job
// table had got and serves again from there: a group event is had when
// its seq is, whichever head sent it, and the head's own events after
// that base are new (the head before kept each of its own in the table
// at once, below the base). The job's end is never had.
func (w *watch) fresh(m *clusterpb.JobEvent, e Event) bool {
	if m.ResultJson == nil && m.Epoch == w.epoch && m.Index < w.next {
		return false
	}
	w.next, w.epoch = m.Index+1, m.Epoch
	if m.ResultJson == nil && m.GroupSeq > 0 && m.GroupSeq <= w.seqs[e.Node] {
		return false
	}
	switch {
	case e.Type == EventRestart:
		w.seqs = nil // the next attempt's groups count from the first
	case m.GroupSeq > 0:
		if w.seqs == nil {
			w.seqs = map[string]int64{}
		}
		w.seqs[e.Node] = m.GroupSeq
	}
	return true
}

func (w *watch) took(addr string, s *search) {
	if w.accepted && w.lostAt == "" {
		return
	}
	w.accepted = true
	w.c.answered()
	// The outage's clock starts again; its backoff goes on until an
	// event comes, so a head that takes streams and drops them at once is
	// not called in a loop.
	s.start = time.Now()
	if w.told {
		w.warn("reconnected to the head at " + addr)
	}
	w.lostAt, w.told = "", false
}

func (w *watch) warn(msg string) {
	if w.onEvent != nil {
		w.onEvent(Event{Type: EventWarning, Time: time.Now(), Message: msg})
	}
}

// giveUp is Attach's error once search stopped at addr with err.
func (w *watch) giveUp(ctx context.Context, addr string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrCancelled, context.Cause(ctx))
	}
	bound := w.c.reconnect()
	if _, ok := failover(err); ok && bound > 0 && (w.accepted || w.wasReached) {
		return &unreachableError{job: w.job, list: w.c.list, bound: bound, err: err}
	}
	return w.c.err("follow job "+w.job, addr, err)
}

// unreachableError is Attach giving up on the heads of a job it followed.
type unreachableError struct {
	job, list string
	bound     time.Duration
	err       error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("trainer: follow job %s: the head at %s could not be reached for %s (%s); follow the job again with `rtrain logs -f %s --address %s`",
		e.job, e.list, e.bound, cause(e.err), e.job, e.list)
}

func (e *unreachableError) Unwrap() error { return e.err }

// Stop asks the head to stop job.
func (c *Client) Stop(ctx context.Context, job string) error {
	addr, err := c.call(ctx, func(head clusterpb.HeadClient) error {
		_, err := head.StopJob(ctx, &clusterpb.StopJobRequest{Job: job})
		return err
	})
	if err != nil {
		return c.err("stop job "+job, addr, err)
	}
	return nil
}

// StopGroup asks the head to stop every job of group that has not ended
// (a sweep's trials) and returns them; none is no error.
func (c *Client) StopGroup(ctx context.Context, group string) ([]JobSummary, error) {
	jobs, err := c.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	var stopped []JobSummary
	for _, j := range jobs {
		if j.Group != group || j.State.Done() {
			continue
		}
		if err := c.Stop(ctx, j.ID); err != nil {
			return stopped, err
		}
		stopped = append(stopped, j)
	}
	return stopped, nil
}

// Status is the cluster's nodes and jobs.
func (c *Client) Status(ctx context.Context) (ClusterStatus, error) {
	var rep *clusterpb.StatusReply
	addr, err := c.call(ctx, func(head clusterpb.HeadClient) error {
		r, err := head.Status(ctx, &clusterpb.StatusRequest{})
		rep = r
		return err
	})
	if err != nil {
		return ClusterStatus{}, c.err("cluster status", addr, err)
	}
	return StatusFromProto(rep), nil
}

// Jobs is every job the head keeps, oldest first.
func (c *Client) Jobs(ctx context.Context) ([]JobSummary, error) {
	var rep *clusterpb.ListJobsReply
	addr, err := c.call(ctx, func(head clusterpb.HeadClient) error {
		r, err := head.ListJobs(ctx, &clusterpb.ListJobsRequest{})
		rep = r
		return err
	})
	if err != nil {
		return nil, c.err("list jobs", addr, err)
	}
	jobs := jobsFromProto(rep.GetJobs())
	slices.SortStableFunc(jobs, func(a, b JobSummary) int { return a.Submitted.Compare(b.Submitted) })
	return jobs, nil
}

// Drain takes node out of the cluster with notice: its workers move to
// other nodes, and the move does not count against their jobs'
// MaxFailures. reason follows "node NODE" in what the jobs are told ("" is
// "drained").
func (c *Client) Drain(ctx context.Context, node, reason string) error {
	addr, err := c.call(ctx, func(head clusterpb.HeadClient) error {
		_, err := head.Drain(ctx, &clusterpb.DrainRequest{NodeId: node, Reason: reason})
		return err
	})
	if err != nil {
		return c.err("drain node "+node, addr, err)
	}
	return nil
}

// fitRemote is Fit on a cluster: submit, follow, and stop the job when ctx
// ends before it.
func (t *Trainer) fitRemote(ctx context.Context) (*Result, error) {
	c, err := Dial(t.cfg.Address, auth.Security{Token: t.cfg.Token, TLSCA: t.cfg.TLSCA, TLSCert: t.cfg.TLSCert, TLSKey: t.cfg.TLSKey})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	sub, err := c.Submit(ctx, t.cfg)
	if err != nil {
		return nil, err
	}
	// Following outlives ctx: a cancelled job still reports how it ended.
	follow, stopFollow := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFollow()
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(follow, 10*time.Second)
			defer cancel()
			if err := c.Stop(sctx, sub.JobID); err != nil {
				t.log.Warn("stop the job", "job", sub.JobID, "err", err)
			}
		case <-follow.Done():
		}
	}()
	return c.Attach(follow, sub.JobID, true, t.cfg.OnEvent)
}

// jobErrorFromWire rebuilds the error a job ended with on the head, as the
// types Fit returns.
func jobErrorFromWire(we *clusterpb.JobError) error {
	if we == nil {
		return nil
	}
	switch we.Kind {
	case "job":
		var jerr JobError
		if json.Unmarshal(we.DetailJson, &jerr) == nil {
			return &jerr
		}
	case "checkpoint":
		var d struct {
			Index int    `json:"index"`
			Error string `json:"error"`
		}
		if json.Unmarshal(we.DetailJson, &d) == nil {
			return &CheckpointError{Index: d.Index, Err: errors.New(d.Error)}
		}
	case "cancelled":
		return fmt.Errorf("%w: %s", ErrCancelled, we.Message)
	case "invalid":
		return invalid("%s", we.Message)
	}
	return errors.New(we.Message)
}
