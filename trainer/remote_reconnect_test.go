package trainer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/trainer"
)

// fakeHead is a Head service whose calls do what its fields say; a call
// with no field set is Unimplemented. The restartable head is tested in
// cluster/head: this is the client's side of it.
type fakeHead struct {
	clusterpb.UnimplementedHeadServer
	watch  func(*clusterpb.WatchJobRequest, grpc.ServerStreamingServer[clusterpb.JobEvent]) error
	submit func(grpc.ClientStreamingServer[clusterpb.SubmitJobRequest, clusterpb.SubmitJobReply]) error
	list   func(context.Context) (*clusterpb.ListJobsReply, error)
}

func (f *fakeHead) WatchJob(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
	if f.watch == nil {
		return f.UnimplementedHeadServer.WatchJob(req, stream)
	}
	return f.watch(req, stream)
}

func (f *fakeHead) SubmitJob(stream grpc.ClientStreamingServer[clusterpb.SubmitJobRequest, clusterpb.SubmitJobReply]) error {
	if f.submit == nil {
		return f.UnimplementedHeadServer.SubmitJob(stream)
	}
	return f.submit(stream)
}

func (f *fakeHead) ListJobs(ctx context.Context, req *clusterpb.ListJobsRequest) (*clusterpb.ListJobsReply, error) {
	if f.list == nil {
		return f.UnimplementedHeadServer.ListJobs(ctx, req)
	}
	return f.list(ctx)
}

// served is a fake head serving on loopback as a head does, with sec's
// token and interceptors, until stop (or the test's end).
type served struct {
	addr string
	srv  *grpc.Server
	done chan struct{}
}

// stop kills the head as a crash would: its connections close, its
// streams break.
func (s *served) stop() {
	s.srv.Stop()
	<-s.done
}

var fakeSecurity = auth.Security{Token: "t"}

// serve serves h at addr ("127.0.0.1:0" for any port) with sec.
func serve(t *testing.T, addr string, sec auth.Security, h clusterpb.HeadServer) *served {
	t.Helper()
	opts, err := sec.ServerOptions()
	require.NoError(t, err)
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	s := &served{addr: ln.Addr().String(), srv: grpc.NewServer(opts...), done: make(chan struct{})}
	clusterpb.RegisterHeadServer(s.srv, h)
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	t.Cleanup(s.stop)
	return s
}

// closedPort is an address on loopback where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func dial(t *testing.T, addr string, sec auth.Security, reconnect time.Duration) *trainer.Client {
	t.Helper()
	c, err := trainer.Dial(addr, sec)
	require.NoError(t, err)
	c.Reconnect = reconnect
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// jobEvents is a job's events 0..n-1 as its head keeps them: log lines
// "line I", the last with the job's result and err.
func jobEvents(t *testing.T, n int, err *clusterpb.JobError) []*clusterpb.JobEvent {
	t.Helper()
	var evs []*clusterpb.JobEvent
	for i := range n {
		e := trainer.Event{Type: trainer.EventLog, Line: "line " + strconv.Itoa(i)}
		ev := &clusterpb.JobEvent{Index: int64(i), Kind: string(e.Type)}
		if i == n-1 {
			e = trainer.Event{Type: trainer.EventState, State: trainer.StateSucceeded}
			if err != nil {
				e.State = trainer.StateFailed
			}
			res, merr := json.Marshal(trainer.Result{State: e.State})
			require.NoError(t, merr)
			ev.ResultJson, ev.Error, ev.Kind = res, err, string(e.Type)
		}
		b, merr := json.Marshal(e)
		require.NoError(t, merr)
		ev.EventJson = b
		evs = append(evs, ev)
	}
	return evs
}

// serveFrom sends evs from req.From, as a head that has them all does.
func serveFrom(evs []*clusterpb.JobEvent, req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
	for _, ev := range evs[req.From:] {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

// follower is what an Attach's onEvent saw: the job's events, and the
// client's own warnings.
type follower struct {
	mu       sync.Mutex
	lines    []string
	warnings []string
	// seen gets the number of job events had, after each; warned each
	// warning.
	seen   chan int
	warned chan string
}

func newFollower() *follower {
	return &follower{seen: make(chan int, 100), warned: make(chan string, 100)}
}

func (f *follower) event(e trainer.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch e.Type {
	case trainer.EventWarning:
		f.warnings = append(f.warnings, e.Message)
		select {
		case f.warned <- e.Message:
		default: // a client that warns in a loop fails its test, not hangs it
		}
		return
	case trainer.EventLog:
		f.lines = append(f.lines, e.Line)
	case trainer.EventState:
		f.lines = append(f.lines, string(e.State))
	}
	select {
	case f.seen <- len(f.lines):
	default:
	}
}

func (f *follower) got() (lines, warnings []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...), append([]string(nil), f.warnings...)
}

// wantLines is what a follower of jobEvents(n) sees.
func wantLines(n int) []string {
	var out []string
	for i := range n - 1 {
		out = append(out, "line "+strconv.Itoa(i))
	}
	return append(out, string(trainer.StateSucceeded))
}

// A followed job whose head is lost mid-stream is followed on at the next
// head from the first event not had: every event once, and the job's
// result, whichever way the first head went.
func TestAttachFollowsOnAtTheNextHead(t *testing.T) {
	const total, before = 10, 4
	evs := jobEvents(t, total, nil)
	tests := []struct {
		name string
		// end ends the first head's stream (its context ctx) once the
		// client has had the events before `before`; next is the second
		// head's address.
		end func(ctx context.Context, first *served, next string) error
	}{
		{"the head dies", func(ctx context.Context, first *served, _ string) error {
			go first.stop()
			<-ctx.Done()
			return ctx.Err()
		}},
		{"the head becomes a standby", func(_ context.Context, _ *served, next string) error { return cluster.NotLeader(next) }},
		{"the head ends the stream", func(context.Context, *served, string) error { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFollower()
			var froms []int64
			var mu sync.Mutex
			second := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
				mu.Lock()
				froms = append(froms, req.From)
				mu.Unlock()
				return serveFrom(evs, req, stream)
			}})
			var first *served
			first = serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
				for _, ev := range evs[:before] {
					if err := stream.Send(ev); err != nil {
						return err
					}
				}
				// Once the client has them, so that what it had is known.
				for n := range f.seen {
					if n == before {
						break
					}
				}
				return tt.end(stream.Context(), first, second.addr)
			}})
			c := dial(t, first.addr+","+second.addr, fakeSecurity, time.Minute)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			res, err := c.Attach(ctx, "job-1", true, f.event)
			require.NoError(t, err)
			require.NotNil(t, res)
			assert.Equal(t, trainer.StateSucceeded, res.State)
			lines, warnings := f.got()
			assert.Equal(t, wantLines(total), lines, "every event once, in order")
			assert.Equal(t, []int64{before}, froms, "the second head was asked for the events from the first not had")
			require.Len(t, warnings, 2, "%q", warnings)
			assert.True(t, strings.HasPrefix(warnings[0], "lost the head at "+first.addr+" ("), warnings[0])
			assert.True(t, strings.HasSuffix(warnings[0], "); reconnecting"), warnings[0])
			assert.Equal(t, "reconnected to the head at "+second.addr, warnings[1])
			assert.Equal(t, second.addr, c.Addr(), "the client's calls go to the head that serves")
		})
	}
}

// A head that restarts at its address while a job runs is waited for,
// and the client follows on where it was, to the job's real outcome.
func TestAttachWaitsForTheHeadToRestart(t *testing.T) {
	const total, before = 6, 3
	jerr := &trainer.JobError{Cause: trainer.WorkerExit{Rank: 1, Exit: launcher.Exit{Code: 3}}}
	detail, err := json.Marshal(jerr)
	require.NoError(t, err)
	evs := jobEvents(t, total, &clusterpb.JobError{Kind: "job", Message: jerr.Error(), DetailJson: detail})
	f := newFollower()
	first := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
		if err := serveFrom(evs[:before], req, stream); err != nil {
			return err
		}
		<-stream.Context().Done()
		return stream.Context().Err()
	}})
	c := dial(t, first.addr, fakeSecurity, time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	type attached struct {
		res *trainer.Result
		err error
	}
	done := make(chan attached, 1)
	go func() {
		res, err := c.Attach(ctx, "job-1", true, f.event)
		done <- attached{res, err}
	}()
	for n := range f.seen {
		if n == before {
			break
		}
	}
	// The head goes; once the client has found it gone, a new one starts
	// at its address.
	first.stop()
	<-f.warned
	serve(t, first.addr, fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
		if req.From != before {
			return status.Errorf(codes.InvalidArgument, "from %d, want %d", req.From, before)
		}
		return serveFrom(evs, req, stream)
	}})
	a := <-done
	res, err := a.res, a.err
	var got *trainer.JobError
	require.ErrorAs(t, err, &got, "the job's own error: %v", err)
	assert.Equal(t, 1, got.Cause.Rank)
	require.NotNil(t, res)
	assert.Equal(t, trainer.StateFailed, res.State)
	lines, warnings := f.got()
	want := wantLines(total)
	want[len(want)-1] = string(trainer.StateFailed)
	assert.Equal(t, want, lines, "every event once, in order")
	require.Len(t, warnings, 2, "%q", warnings)
	assert.True(t, strings.HasPrefix(warnings[0], "lost the head at "+first.addr+" ("), warnings[0])
	assert.Equal(t, "reconnected to the head at "+first.addr, warnings[1])
}

// A client that cannot find a head for Reconnect gives up with one line
// that says for how long, and how to follow the job again.
func TestAttachGivesUpAfterReconnect(t *testing.T) {
	evs := jobEvents(t, 5, nil)
	f := newFollower()
	var first *served
	first = serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
		if err := serveFrom(evs[:2], req, stream); err != nil {
			return err
		}
		for n := range f.seen {
			if n == 2 {
				break
			}
		}
		go first.stop()
		<-stream.Context().Done()
		return stream.Context().Err()
	}})
	gone := closedPort(t)
	list := first.addr + "," + gone
	c := dial(t, list, fakeSecurity, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := c.Attach(ctx, "job-1", true, f.event)
	require.Error(t, err)
	assert.Nil(t, res)
	assert.NoError(t, ctx.Err(), "it gave up by itself")
	msg := err.Error()
	assert.True(t, strings.HasPrefix(msg, "trainer: follow job job-1: the head at "+list+" could not be reached for 300ms ("), msg)
	assert.True(t, strings.HasSuffix(msg, "); follow the job again with `rtrain logs -f job-1 --address "+list+"`"), msg)
	assert.NotContains(t, msg, "\n")
	assert.Equal(t, codes.Unavailable, status.Code(err), "the chain keeps the last error")
	lines, warnings := f.got()
	assert.Equal(t, []string{"line 0", "line 1"}, lines)
	require.Len(t, warnings, 1, "%q", warnings)
	assert.True(t, strings.HasPrefix(warnings[0], "lost the head at "+first.addr+" ("), warnings[0])
}

// A head reached after the one that ran the job was lost, that does not
// know the job, is an error that names it.
func TestAttachToAHeadThatDoesNotKnowTheJob(t *testing.T) {
	evs := jobEvents(t, 5, nil)
	f := newFollower()
	second := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, _ grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
		return status.Errorf(codes.NotFound, "no job %q on this cluster; `rtrain jobs` lists them", req.Job)
	}})
	first := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
		if err := serveFrom(evs[:2], req, stream); err != nil {
			return err
		}
		return cluster.NotLeader(second.addr)
	}})
	c := dial(t, first.addr+","+second.addr, fakeSecurity, time.Minute)
	_, err := c.Attach(t.Context(), "job-1", true, f.event)
	require.Error(t, err)
	assert.Equal(t, `trainer: follow job job-1: the head at `+second.addr+`, reached after the one at `+first.addr+` was lost, does not know the job: no job "job-1" on this cluster; `+"`rtrain jobs` lists them", err.Error())
	assert.Equal(t, codes.NotFound, status.Code(err))
}

// A head that restarted knowing only how the job ended keeps its end at
// index 0, in an epoch after every earlier head's: it serves a client of
// an earlier epoch from its first event, which the client takes, however
// far into the earlier numbering it had got.
func TestAttachToAHeadThatKeptOnlyTheJobsEnd(t *testing.T) {
	evs := jobEvents(t, 5, nil)
	f := newFollower()
	const lost = "the head restarted while the job was RUNNING; run it again with --resume --name j"
	end, err := json.Marshal(trainer.Event{Type: trainer.EventState, State: trainer.StateLost, Message: lost})
	require.NoError(t, err)
	res, err := json.Marshal(trainer.Result{State: trainer.StateLost})
	require.NoError(t, err)
	var mu sync.Mutex
	var asked []*clusterpb.WatchJobRequest
	second := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
		mu.Lock()
		asked = append(asked, req)
		mu.Unlock()
		if req.Epoch >= 1 && req.From > 0 {
			return nil
		}
		return stream.Send(&clusterpb.JobEvent{Index: 0, Epoch: 1, EventJson: end, ResultJson: res, Kind: string(trainer.EventState),
			Error: &clusterpb.JobError{Kind: "other", Message: lost}})
	}})
	first := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
		if err := serveFrom(evs[:3], req, stream); err != nil {
			return err
		}
		return cluster.NotLeader(second.addr)
	}})
	c := dial(t, first.addr+","+second.addr, fakeSecurity, time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got, err := c.Attach(ctx, "job-1", true, f.event)
	require.EqualError(t, err, lost)
	require.NotNil(t, got)
	assert.Equal(t, trainer.StateLost, got.State)
	lines, warnings := f.got()
	assert.Equal(t, []string{"line 0", "line 1", "line 2", string(trainer.StateLost)}, lines)
	mu.Lock()
	require.Len(t, asked, 1)
	assert.Equal(t, int64(3), asked[0].From, "from the events not had")
	assert.Equal(t, int64(0), asked[0].Epoch, "in the first head's numbering")
	mu.Unlock()
	assert.Len(t, warnings, 2, "lost, and reconnected: %q", warnings)
}

// groupEvent is a log line of node's group, its seq-th event, at index in
// epoch's numbering.
func groupEvent(t *testing.T, epoch, index int64, node string, seq int64) *clusterpb.JobEvent {
	t.Helper()
	b, err := json.Marshal(trainer.Event{Type: trainer.EventLog, Node: node, Line: fmt.Sprintf("%s %d", node, seq)})
	require.NoError(t, err)
	return &clusterpb.JobEvent{Index: index, Epoch: epoch, GroupSeq: seq, EventJson: b, Kind: string(trainer.EventLog)}
}

// A head that adopts a job numbers its events from where the job table
// had got (here 2), short of where the head before got with the client
// (5), and in another order: two nodes' lines interleave differently. It
// serves the client again from that base; the client passes on each line
// once, the adopting head's own event too, and follows on in the new
// numbering when that head is lost in turn.
func TestAttachToAHeadThatNumberedTheJobAnew(t *testing.T) {
	first := []*clusterpb.JobEvent{groupEvent(t, 0, 0, "a", 1), groupEvent(t, 0, 1, "b", 1),
		groupEvent(t, 0, 2, "a", 2), groupEvent(t, 0, 3, "a", 3), groupEvent(t, 0, 4, "b", 2)}
	own, err := json.Marshal(trainer.Event{Type: trainer.EventWarning, Message: "a head's own"})
	require.NoError(t, err)
	anew := []*clusterpb.JobEvent{groupEvent(t, 1, 2, "b", 2), groupEvent(t, 1, 3, "a", 2),
		{Index: 4, Epoch: 1, EventJson: own, Kind: string(trainer.EventWarning)},
		groupEvent(t, 1, 5, "b", 3), groupEvent(t, 1, 6, "a", 3), groupEvent(t, 1, 7, "a", 4)}
	done := jobEvents(t, 1, nil)[0]
	done.Index, done.Epoch = 8, 1
	var mu sync.Mutex
	var asked []*clusterpb.WatchJobRequest
	var addrs []string
	third := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
		mu.Lock()
		asked = append(asked, req)
		mu.Unlock()
		for _, ev := range append(anew, done) {
			if ev.Index >= req.From {
				if err := stream.Send(ev); err != nil {
					return err
				}
			}
		}
		return nil
	}})
	second := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
		mu.Lock()
		asked = append(asked, req)
		mu.Unlock()
		from := req.From
		if req.Epoch < 1 {
			from = min(from, 2)
		}
		for _, ev := range anew[:4] {
			if ev.Index >= from {
				if err := stream.Send(ev); err != nil {
					return err
				}
			}
		}
		return cluster.NotLeader(addrs[2])
	}})
	head := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{watch: func(req *clusterpb.WatchJobRequest, stream grpc.ServerStreamingServer[clusterpb.JobEvent]) error {
		if err := serveFrom(first, req, stream); err != nil {
			return err
		}
		return cluster.NotLeader(addrs[1])
	}})
	addrs = []string{head.addr, second.addr, third.addr}
	c := dial(t, strings.Join(addrs, ","), fakeSecurity, time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	f := newFollower()
	got, err := c.Attach(ctx, "job-1", true, f.event)
	require.NoError(t, err)
	assert.Equal(t, trainer.StateSucceeded, got.State)
	lines, warnings := f.got()
	assert.Equal(t, []string{"a 1", "b 1", "a 2", "a 3", "b 2", "b 3", "a 4", string(trainer.StateSucceeded)}, lines)
	assert.Contains(t, warnings, "a head's own")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, asked, 2)
	assert.Equal(t, [2]int64{5, 0}, [2]int64{asked[0].From, asked[0].Epoch}, "the second head, in the first one's numbering")
	assert.Equal(t, [2]int64{6, 1}, [2]int64{asked[1].From, asked[1].Epoch}, "the third, in the second one's")
}

// listing is a head's reply to ListJobs: one job, named for the head.
func listing(name string) func(context.Context) (*clusterpb.ListJobsReply, error) {
	return func(context.Context) (*clusterpb.ListJobsReply, error) {
		return &clusterpb.ListJobsReply{Jobs: []*clusterpb.JobSummary{{Id: name}}}, nil
	}
}

// A call goes on from an address where nothing listens to the next one.
func TestCallsGoOnToTheNextAddress(t *testing.T) {
	second := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{list: listing("second")})
	c := dial(t, closedPort(t)+", "+second.addr, fakeSecurity, 0)
	jobs, err := c.Jobs(t.Context())
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	assert.Equal(t, "second", jobs[0].ID)
	assert.Equal(t, second.addr, c.Addr())
}

// A client no head ever answered says so at once, naming every address,
// rather than waiting Reconnect for one that was never there.
func TestCallsToNoHeadFailAtOnce(t *testing.T) {
	a, b := closedPort(t), closedPort(t)
	c := dial(t, a+","+b, fakeSecurity, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := c.Jobs(ctx)
	require.Error(t, err)
	assert.NoError(t, ctx.Err(), "it did not wait for Reconnect")
	assert.Contains(t, err.Error(), "list jobs at "+a+","+b+": cannot reach it (")
	assert.Contains(t, err.Error(), "is the head running?")
}

// A standby that names the leader sends the client there first, over TLS
// even when the leader is not among the addresses given; over plain TCP
// the token goes only to those.
func TestStandbySendsTheClientToTheLeader(t *testing.T) {
	cert, pin, err := auth.SelfSigned([]string{"127.0.0.1"})
	require.NoError(t, err)
	tlsServer := auth.Security{Token: "t", Certificate: &cert}
	tlsClient := auth.Security{Token: "t", Pin: pin}
	for _, tt := range []struct {
		name           string
		server, client auth.Security
		// listed: the leader is among the addresses given, after one
		// that would refuse the call too.
		listed bool
		want   string // the leader that answers, or the error
	}{
		{name: "listed", server: fakeSecurity, client: fakeSecurity, listed: true, want: "leader"},
		{name: "not listed, TLS", server: tlsServer, client: tlsClient, want: "leader"},
		{name: "not listed, plain TCP", server: fakeSecurity, client: fakeSecurity, want: "this head is a standby; the leader is at "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leader := serve(t, "127.0.0.1:0", tt.server, &fakeHead{list: listing("leader")})
			var bystanderCalls atomic.Int32
			bystander := serve(t, "127.0.0.1:0", tt.server, &fakeHead{list: func(context.Context) (*clusterpb.ListJobsReply, error) {
				bystanderCalls.Add(1)
				return nil, cluster.NotLeader("")
			}})
			standby := serve(t, "127.0.0.1:0", tt.server, &fakeHead{list: func(context.Context) (*clusterpb.ListJobsReply, error) {
				return nil, cluster.NotLeader(leader.addr)
			}})
			list := standby.addr
			if tt.listed {
				list += "," + bystander.addr + "," + leader.addr
			}
			c := dial(t, list, tt.client, 300*time.Millisecond)
			jobs, err := c.Jobs(t.Context())
			if tt.want != "leader" {
				require.Error(t, err)
				assert.ErrorIs(t, err, cluster.ErrNotLeader)
				assert.Contains(t, err.Error(), tt.want+leader.addr)
				return
			}
			require.NoError(t, err)
			require.Len(t, jobs, 1)
			assert.Equal(t, "leader", jobs[0].ID)
			assert.Equal(t, leader.addr, c.Addr())
			assert.Zero(t, bystanderCalls.Load(), "the leader named came before the next address")
		})
	}
}

// submitTo is a head's SubmitJob that takes the job, calls got, and
// replies with id, or with what reply says given the call's context.
func submitTo(id string, got func(), reply func(context.Context) error) func(grpc.ClientStreamingServer[clusterpb.SubmitJobRequest, clusterpb.SubmitJobReply]) error {
	return func(stream grpc.ClientStreamingServer[clusterpb.SubmitJobRequest, clusterpb.SubmitJobReply]) error {
		for {
			_, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
		}
		got()
		if reply != nil {
			return reply(stream.Context())
		}
		return stream.SendAndClose(&clusterpb.SubmitJobReply{JobId: id, Name: id})
	}
}

// A job goes to the leader past heads that never had it (down, or a
// standby), and is never sent twice: once a head may have it, the client
// says so and sends it nowhere else.
func TestSubmitGoesOnlyWhereNoHeadCanHaveIt(t *testing.T) {
	dir := projectDir(t, 1024)
	cfg := trainer.Config{Script: filepath.Join(dir, "train.py"), WorkingDir: dir, Workers: 1}
	for _, tt := range []struct {
		name string
		// first is the first address's head, given the second's address
		// and a count of the submissions it got; "" is a closed port.
		first     func(t *testing.T, next string, got func()) string
		wantFirst int32
		wantErr   string
	}{
		{name: "nothing listens at the first", first: func(t *testing.T, _ string, _ func()) string { return closedPort(t) }},
		{name: "the first is a standby", first: func(t *testing.T, next string, got func()) string {
			return serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{submit: func(grpc.ClientStreamingServer[clusterpb.SubmitJobRequest, clusterpb.SubmitJobReply]) error {
				got()
				return cluster.NotLeader(next)
			}}).addr
		}, wantFirst: 1},
		{name: "the first dies with the job", first: func(t *testing.T, _ string, got func()) string {
			var s *served
			s = serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{submit: submitTo("lost", got, func(ctx context.Context) error {
				// Took it, and went before replying.
				go s.stop()
				<-ctx.Done()
				return ctx.Err()
			})})
			return s.addr
		}, wantFirst: 1, wantErr: "the call broke off before the head replied ("},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var firstGot, secondGot atomic.Int32
			second := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{submit: submitTo("job-2", func() { secondGot.Add(1) }, nil)})
			first := tt.first(t, second.addr, func() { firstGot.Add(1) })
			c := dial(t, first+","+second.addr, fakeSecurity, time.Minute)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			sub, err := c.Submit(ctx, cfg)
			assert.Equal(t, tt.wantFirst, firstGot.Load(), "submissions the first head got")
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "submit the job at "+first+": "+tt.wantErr)
				assert.Contains(t, err.Error(), "so it may have the job: `rtrain jobs` shows whether it does before you submit it again")
				assert.Zero(t, secondGot.Load(), "the job went nowhere else")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "job-2", sub.JobID)
			assert.Equal(t, int32(1), secondGot.Load(), "the leader got the job once")
		})
	}
}

func TestSplitAddresses(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "10.0.0.1:6379", want: []string{"10.0.0.1:6379"}},
		{in: " h1:6379 , h2:6379,h3:6379 ", want: []string{"h1:6379", "h2:6379", "h3:6379"}},
		{in: "h1:6379,h1:6379", want: []string{"h1:6379"}},
		{in: "", wantErr: "no head address: give HOST:PORT, or every head's as HOST:PORT,HOST:PORT"},
		{in: "h1:6379,,h2:6379", wantErr: `head address "h1:6379,,h2:6379" has an empty entry: give HOST:PORT, or every head's as HOST:PORT,HOST:PORT with one address between each two commas`},
		{in: "h1:6379,", wantErr: `head address "h1:6379," has an empty entry`},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := trainer.SplitAddresses(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, trainer.ErrInvalidConfig)
				assert.Contains(t, err.Error(), tt.wantErr)
				_, derr := trainer.Dial(tt.in, fakeSecurity)
				assert.ErrorIs(t, derr, trainer.ErrInvalidConfig, "Dial refuses it too")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// Reconnect < 0: the first head's error, as it is.
func TestNoReconnect(t *testing.T) {
	s := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{list: func(context.Context) (*clusterpb.ListJobsReply, error) {
		return nil, cluster.NotLeader("")
	}})
	var calls atomic.Int32
	other := serve(t, "127.0.0.1:0", fakeSecurity, &fakeHead{list: func(context.Context) (*clusterpb.ListJobsReply, error) {
		calls.Add(1)
		return nil, fmt.Errorf("never called")
	}})
	c := dial(t, s.addr+","+other.addr, fakeSecurity, -1)
	_, err := c.Jobs(t.Context())
	assert.ErrorIs(t, err, cluster.ErrNotLeader)
	assert.Zero(t, calls.Load())
}
