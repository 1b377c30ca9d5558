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
	"time"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/internal/workdir"
)

// Client talks to a cluster's head: it submits jobs and follows them, and
// reads and drains the cluster.
type Client struct {
	head clusterpb.HeadClient
	// Addr is the head's address.
	Addr  string
	close func() error
}

// Dial connects to the head at addr; the token comes from sec or
// $RTRAIN_TOKEN.
func Dial(addr string, sec auth.Security) (*Client, error) {
	if sec.Token == "" {
		sec.Token = os.Getenv(auth.TokenEnv)
	}
	conn, err := sec.Dial(addr)
	if err != nil {
		return nil, err
	}
	return &Client{head: clusterpb.NewHeadClient(conn), Addr: addr, close: conn.Close}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.close() }

func (c *Client) err(what string, err error) error {
	return fmt.Errorf("%s at %s: %w", what, c.Addr, auth.RemoteError(err))
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
	rep, err := c.submit(ctx, &clusterpb.SubmitJobHeader{ConfigJson: body, Script: rel, Workdir: cluster.ManifestOf(ar)}, ar)
	if limit, ok := cluster.WorkdirLimit(err); ok {
		return nil, invalid("%w", tooLargeForHead(ctx, dir, ar, limit, c.Addr))
	}
	if err != nil {
		return nil, c.err("submit the job", err)
	}
	return &Submitted{JobID: rep.JobId, Name: rep.Name, Files: ar.Files, Bytes: ar.Size}, nil
}

// submit sends the job, then its working directory in chunks.
func (c *Client) submit(ctx context.Context, hdr *clusterpb.SubmitJobHeader, ar *workdir.Archive) (*clusterpb.SubmitJobReply, error) {
	stream, err := c.head.SubmitJob(ctx)
	if err != nil {
		return nil, err
	}
	err = stream.Send(&clusterpb.SubmitJobRequest{Job: hdr})
	if err == nil {
		err = cluster.SendArchive(bytes.NewReader(ar.Data), func(chunk []byte) error {
			return stream.Send(&clusterpb.SubmitJobRequest{WorkdirChunk: chunk})
		})
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// After io.EOF from Send, the head has ended the call: this says why.
	return stream.CloseAndRecv()
}

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
func (c *Client) Attach(ctx context.Context, job string, follow bool, onEvent func(Event)) (*Result, error) {
	stream, err := c.head.WatchJob(ctx, &clusterpb.WatchJobRequest{Job: job, Follow: follow})
	if err != nil {
		return nil, c.err("follow job "+job, err)
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if follow {
				return nil, fmt.Errorf("trainer: the head at %s ended the job's event stream early", c.Addr)
			}
			return nil, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: %w", ErrCancelled, context.Cause(ctx))
			}
			return nil, c.err("follow job "+job, err)
		}
		var e Event
		if err := json.Unmarshal(m.EventJson, &e); err != nil {
			return nil, fmt.Errorf("trainer: event from the head: %w", err)
		}
		if onEvent != nil {
			onEvent(e)
		}
		if m.ResultJson != nil {
			var res Result
			if err := json.Unmarshal(m.ResultJson, &res); err != nil {
				return nil, fmt.Errorf("trainer: result from the head: %w", err)
			}
			return &res, jobErrorFromWire(m.Error)
		}
	}
}

// Stop asks the head to stop job.
func (c *Client) Stop(ctx context.Context, job string) error {
	if _, err := c.head.StopJob(ctx, &clusterpb.StopJobRequest{Job: job}); err != nil {
		return c.err("stop job "+job, err)
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
	rep, err := c.head.Status(ctx, &clusterpb.StatusRequest{})
	if err != nil {
		return ClusterStatus{}, c.err("cluster status", err)
	}
	return StatusFromProto(rep), nil
}

// Jobs is every job the head keeps, oldest first.
func (c *Client) Jobs(ctx context.Context) ([]JobSummary, error) {
	rep, err := c.head.ListJobs(ctx, &clusterpb.ListJobsRequest{})
	if err != nil {
		return nil, c.err("list jobs", err)
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
	if _, err := c.head.Drain(ctx, &clusterpb.DrainRequest{NodeId: node, Reason: reason}); err != nil {
		return c.err("drain node "+node, err)
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
