package trainer

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/internal/errgrpc"
)

// A cluster may have several heads, one the leader and the others
// standbys, and a head may restart while its jobs run. A Client keeps the
// heads' addresses and a connection to each it has used, and sends each
// call to the head it takes for the leader; a call that finds it down, or
// a standby, goes on to the leader the standby names, else the next
// address, until a head serves it or Client.Reconnect has passed.

// DefaultReconnect is how long a Client looks for the leader when
// Client.Reconnect is 0: longer than a head takes to restart, or a
// standby to take over.
const DefaultReconnect = 2 * time.Minute

// The waits between tries once every address has been tried: from
// backoffMin, doubling to backoffMax, each cut by up to a fifth at random
// so that a cluster's clients do not all call the new leader at once.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 2 * time.Second
)

// SplitAddresses is addr, a head's HOST:PORT or every head's as
// HOST:PORT,HOST:PORT, as a list: spaces trimmed, repeats dropped. A list
// with an empty entry is an ErrInvalidConfig that says what to write.
func SplitAddresses(addr string) ([]string, error) {
	if strings.TrimSpace(addr) == "" {
		return nil, invalid("no head address: give HOST:PORT, or every head's as HOST:PORT,HOST:PORT")
	}
	var out []string
	for a := range strings.SplitSeq(addr, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, invalid("head address %q has an empty entry: give HOST:PORT, or every head's as HOST:PORT,HOST:PORT with one address between each two commas", addr)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// leader is the head calls go to now, with its address; its connection is
// made on first use, and connects on the first call.
func (c *Client) leader() (string, clusterpb.HeadClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", nil, errors.New("trainer: the client is closed")
	}
	addr := c.addrs[c.cur]
	conn, ok := c.conns[addr]
	if !ok {
		var err error
		if conn, err = c.sec.Dial(addr); err != nil {
			return addr, nil, err
		}
		c.conns[addr] = conn
	}
	return addr, clusterpb.NewHeadClient(conn), nil
}

// moveOn sends the calls after one that failed at from to leader, the
// address a standby named, else to the address after from; it returns how
// many addresses the client has. A leader outside the addresses given is
// taken only over TLS, where its certificate vouches for it: over plain
// TCP the token goes only where the user said.
func (c *Client) moveOn(from, leader string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if leader != "" && leader != from {
		i := slices.Index(c.addrs, leader)
		if i < 0 && c.sec.TLS() {
			c.addrs = append(c.addrs, leader)
			i = len(c.addrs) - 1
		}
		if i >= 0 {
			c.cur = i
			return len(c.addrs)
		}
	}
	if c.addrs[c.cur] == from {
		c.cur = (c.cur + 1) % len(c.addrs)
	}
	return len(c.addrs)
}

// wake has the connection to the head calls go to now try to connect at
// once, not when grpc's own backoff, which grows to minutes, says.
func (c *Client) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn, ok := c.conns[c.addrs[c.cur]]; ok {
		conn.ResetConnectBackoff()
	}
}

// answered records that a head answered a call: from then on, a head
// that cannot be reached is one that went away, looked for until
// Reconnect has passed, not one that was never there.
func (c *Client) answered() {
	c.mu.Lock()
	c.reached = true
	c.mu.Unlock()
}

// count is how many addresses the client has.
func (c *Client) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.addrs)
}

func (c *Client) hasReached() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reached
}

func (c *Client) reconnect() time.Duration {
	if c.Reconnect == 0 {
		return DefaultReconnect
	}
	return c.Reconnect
}

// errEndedEarly is a followed job's event stream that its head ended
// before the job's last event: the head is going away.
var errEndedEarly = errors.New("it ended the job's event stream early")

// failover reports whether err says the call may succeed at another head,
// or at this one later: the head could not be reached, broke the call off
// or is a standby (naming the leader where it knows it). Every other error
// is the head's answer.
func failover(err error) (leader string, ok bool) {
	var ms *maybeSubmitted
	switch {
	case errors.As(err, &ms):
		return "", false
	case errors.Is(err, cluster.ErrNotLeader):
		leader, _ = cluster.LeaderHint(err)
		return leader, true
	case errors.Is(err, errEndedEarly):
		return "", true
	}
	switch status.Code(err) {
	case codes.Unavailable:
		// Unavailable under a reason of its own is that refusal, not a
		// head that is down.
		return "", errgrpc.Reason(err) == ""
	case codes.Canceled:
		// The head's side of the call ended (it is stopping); a caller's
		// own cancellation is no reason to retry, and search checks it.
		return "", true
	}
	return "", false
}

// search is the tries of one call, or of one outage of a followed job's
// stream, to find a head that serves it.
type search struct {
	c     *Client
	start time.Time // the first failure
	tries int       // failures since
}

// again reports whether to try again after the call to addr failed with
// err: when err is a failover error, ctx has not ended, Reconnect has not
// passed since the first failure and, if no head ever answered this
// client, some address is still untried. It moves the client on to the
// head to try next and waits out the backoff first.
func (s *search) again(ctx context.Context, addr string, err error) bool {
	leader, ok := failover(err)
	if !ok || errors.Is(err, cluster.ErrNotLeader) {
		s.c.answered()
	}
	bound := s.c.reconnect()
	if !ok || bound < 0 || ctx.Err() != nil {
		return false
	}
	if s.tries == 0 {
		s.start = time.Now()
	}
	s.tries++
	n := s.c.moveOn(addr, leader)
	if s.tries >= n && !s.c.hasReached() {
		// Every address refused and none ever answered: no head runs
		// there, and saying so at once beats waiting for one.
		return false
	}
	left := bound - time.Since(s.start)
	if left <= 0 {
		return false
	}
	if wait := min(s.backoff(n), left); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	s.c.wake()
	return true
}

// backoff is the wait before the next try: none while the first pass over
// the n addresses goes on, then growing.
func (s *search) backoff(n int) time.Duration {
	if s.tries < n {
		return 0
	}
	d := backoffMin << min(s.tries-n, 5)
	d = min(d, backoffMax)
	return d - rand.N(d/5)
}

// past reports whether the search has tried every address once.
func (s *search) past(n int) bool { return s.tries >= n }

// reset ends the search: the call got through.
func (s *search) reset() { s.tries = 0 }

// cause is why a head was lost, in a few words, for the line that says so.
func cause(err error) string {
	if leader, ok := cluster.LeaderHint(err); ok {
		if leader != "" {
			return "it is a standby; the leader is at " + leader
		}
		return "it is a standby"
	}
	if errors.Is(err, errEndedEarly) {
		return errEndedEarly.Error()
	}
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	// grpc-go's transport errors in their own words, without its layers:
	// `connection error: desc = "transport: Error while dialing: dial tcp
	// 127.0.0.1:1: connect: connection refused"`.
	msg = strings.TrimPrefix(msg, "connection error: desc = ")
	msg = strings.Trim(msg, `"`)
	msg = strings.TrimPrefix(msg, "transport: ")
	msg = strings.TrimPrefix(msg, "Error while dialing: ")
	return msg
}
