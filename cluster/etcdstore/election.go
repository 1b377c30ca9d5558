package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// errLeaseLost is a campaign's lease gone before it won; Campaign tries
// again with a new one.
var errLeaseLost = errors.New("lease lost while campaigning")

// Campaign makes the head id, reachable at addr, a candidate and blocks
// until it leads, or ctx ends. While another head leads, this one is a
// standby: it shows in Members, and its Campaign returns when the leader
// resigns or dies. If etcd is unavailable, or the candidate's lease is
// lost before it wins, Campaign waits and tries again with a new lease.
// It returns an error only when ctx ends, the store is closed, or etcd
// refuses the candidate for good; a candidate that gave up leaves the
// election.
func (s *Store) Campaign(ctx context.Context, id, addr string) (*Leadership, error) {
	if id == "" {
		return nil, errors.New("etcdstore: campaign: empty head ID")
	}
	val, err := json.Marshal(candidate{ID: id, Addr: addr})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: campaign %s: %w", id, err)
	}
	log := s.log.With("head", id)
	for n := 0; ; n++ {
		if err := s.checkOpen("campaign " + id); err != nil {
			return nil, err
		}
		l, err := s.campaign(ctx, id, string(val), log)
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("etcdstore: campaign %s: %w", id, ctx.Err())
		}
		if s.client.Ctx().Err() != nil {
			return nil, fmt.Errorf("etcdstore: campaign %s: %w", id, ErrClosed)
		}
		if !errors.Is(err, errLeaseLost) && !unavailable(err) {
			return nil, fmt.Errorf("etcdstore: campaign %s: %w", id, err)
		}
		wait := retryWait(n, s.cfg.TTL/2)
		log.Warn("campaign interrupted; trying again", "err", err, "in", wait)
		if !sleep(ctx, wait) {
			return nil, fmt.Errorf("etcdstore: campaign %s: %w", id, ctx.Err())
		}
	}
}

// campaign is one try of Campaign, with one lease.
func (s *Store) campaign(ctx context.Context, id, val string, log *slog.Logger) (*Leadership, error) {
	c, err := s.grant(ctx, log)
	if err != nil {
		return nil, err
	}
	elec := concurrency.NewElection(c.sess, s.electionPrefix())
	// concurrency.Election.Campaign, when its ctx ends, resigns with the
	// client's own context, which waits for an etcd that is away: it runs
	// on a goroutine of the store's, which hands over what it won or
	// gives it up if nobody takes it.
	won := make(chan error)
	started := s.goroutine(func() {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(c.ctx, cancel)()
		err := elec.Campaign(cctx, val)
		if err == nil {
			err = c.holds(cctx, elec)
		}
		if err != nil && c.ctx.Err() != nil {
			err = fmt.Errorf("%w: %s", errLeaseLost, c.cause())
		}
		select {
		case won <- err:
			if err != nil {
				c.lose("campaign failed")
			}
		case <-ctx.Done():
			c.lose("campaign given up")
		}
	})
	if !started {
		c.lose("store closed")
		return nil, ErrClosed
	}
	select {
	case err := <-won:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l := &Leadership{c: c, s: s, id: id, key: elec.Key(), term: elec.Rev()}
	log.Info("leading", "term", l.term, "lease", fmt.Sprintf("%x", c.lease))
	return l, nil
}

// holds checks that elec's key is still there with c's lease: a lease
// revoked on the server deletes the key, which ends the wait of
// Election.Campaign as a win, before the client hears of the revocation.
func (c *candidacy) holds(ctx context.Context, elec *concurrency.Election) error {
	resp, err := c.s.client.Get(ctx, elec.Key())
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != elec.Rev() || clientv3.LeaseID(resp.Kvs[0].Lease) != c.lease {
		c.lose("election key gone")
		return fmt.Errorf("%w: election key %s gone", errLeaseLost, elec.Key())
	}
	return nil
}

// candidacy is one lease of a candidate: a concurrency.Session keeps it
// alive, and monitor watches its renewals to tell when it is lost.
type candidacy struct {
	s     *Store
	sess  *concurrency.Session
	lease clientv3.LeaseID
	log   *slog.Logger

	ctx    context.Context // ends when the lease is lost
	cancel context.CancelFunc
	lost   chan struct{} // closed when the lease is lost
	giveUp chan string   // a reason to lose it, from lose
	done   chan struct{} // closed when monitor has revoked the lease

	mu        sync.Mutex
	why       string // why the lease was lost
	revokeErr error
}

// grant takes a lease of the store's TTL and starts keeping it alive.
func (s *Store) grant(ctx context.Context, log *slog.Logger) (*candidacy, error) {
	start := time.Now()
	g, err := s.client.Grant(ctx, s.ttl)
	if err != nil {
		return nil, err
	}
	// A channel of renewals of our own beside the session's: each renewal
	// that comes back moves the deadline by which the lease counts as
	// lost. The lessor sends one request per lease for both.
	kctx, stopRenewals := context.WithCancel(s.client.Ctx())
	renewals, err := s.client.KeepAlive(kctx, g.ID)
	if err != nil {
		stopRenewals()
		s.revoke(g.ID)
		return nil, err
	}
	sess, err := concurrency.NewSession(s.client, concurrency.WithTTL(int(s.ttl)), concurrency.WithLease(g.ID))
	if err != nil {
		stopRenewals()
		s.revoke(g.ID)
		return nil, err
	}
	c := &candidacy{
		s:      s,
		sess:   sess,
		lease:  g.ID,
		log:    log.With("lease", fmt.Sprintf("%x", g.ID)),
		lost:   make(chan struct{}),
		giveUp: make(chan string, 1),
		done:   make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	deadline := start.Add(valid(g.TTL))
	if !s.goroutine(func() { c.monitor(renewals, stopRenewals, deadline) }) {
		c.cancel()
		stopRenewals()
		sess.Orphan()
		return nil, ErrClosed
	}
	return c, nil
}

// valid is how long a lease renewed for ttl seconds counts as held here:
// four fifths of it, so that the holder knows it lost before the server
// can have expired it, even when the renewal's answer took up to a fifth
// of the TTL to arrive.
func valid(ttl int64) time.Duration {
	return time.Duration(ttl) * time.Second * 4 / 5
}

// monitor waits until the lease is lost (its renewals end, none comes back
// before the deadline, or lose is called), then tells (lost, ctx), stops
// the renewals and revokes the lease.
func (c *candidacy) monitor(renewals <-chan *clientv3.LeaseKeepAliveResponse, stopRenewals context.CancelFunc, deadline time.Time) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	why := ""
	for why == "" {
		select {
		case r, ok := <-renewals:
			switch {
			case !ok && c.s.client.Ctx().Err() != nil:
				why = "store closed"
			case !ok:
				why = "lease expired or revoked"
			default:
				timer.Reset(valid(r.TTL))
			}
		case <-timer.C:
			why = "no lease renewal came back in time"
		case why = <-c.giveUp:
		}
	}
	c.mu.Lock()
	c.why = why
	c.mu.Unlock()
	close(c.lost)
	c.cancel()
	stopRenewals()
	c.sess.Orphan()
	// Revoking deletes the election key with the lease, so a standby need
	// not wait for it to expire. It is worth waiting for an etcd that is
	// away: a restarted etcd keeps leases and gives each a full TTL again.
	err := c.s.revokeWhenBack(c.lease)
	c.mu.Lock()
	c.revokeErr = err
	c.mu.Unlock()
	close(c.done)
	c.log.Debug("lease given up", "why", why, "revoke_err", err)
}

// lose makes the monitor give the lease up, for why; only the first reason
// counts.
func (c *candidacy) lose(why string) {
	select {
	case c.giveUp <- why:
	default:
	}
}

func (c *candidacy) cause() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.why
}

// revokeWhenBack revokes a lease, waiting for etcd while it is
// unavailable, until the store is closed; a lease already gone is fine.
func (s *Store) revokeWhenBack(id clientv3.LeaseID) error {
	ctx := s.client.Ctx()
	for n := 0; ; n++ {
		_, err := s.client.Revoke(ctx, id)
		if err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return nil
		}
		if ctx.Err() != nil {
			return ErrClosed
		}
		if !unavailable(err) || !sleep(ctx, retryWait(n, s.cfg.TTL)) {
			return err
		}
	}
}

// revoke revokes a lease, waiting at most a TTL; a lease already gone is
// fine.
func (s *Store) revoke(id clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(s.client.Ctx(), s.cfg.TTL)
	defer cancel()
	_, err := s.client.Revoke(ctx, id)
	if err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return nil
	}
	return err
}

// Leadership is a head's term as the leader, from Campaign until it is
// lost. It is safe for concurrent use.
type Leadership struct {
	c    *candidacy
	s    *Store
	id   string
	key  string // the election key
	term int64  // its create revision
}

// Lost is closed as soon as the leadership is lost: its lease expired or
// was revoked, no renewal came back within four fifths of the TTL (see the
// package documentation), Resign was called, a guarded write found another
// leader, or the Store was closed. A head must stop acting as the leader
// then; it can Campaign again.
func (l *Leadership) Lost() <-chan struct{} { return l.c.lost }

// Why says why the leadership was lost; "" while it is not.
func (l *Leadership) Why() string { return l.c.cause() }

// Term is the create revision of the leader's election key: each new
// leader's is greater than every earlier one's, so it is a fencing token
// for what lies outside etcd.
func (l *Leadership) Term() int64 { return l.term }

// ID is the head's ID, as given to Campaign.
func (l *Leadership) ID() string { return l.id }

// Resign gives the leadership up and revokes its lease, so a standby takes
// over at once. It waits for the revocation until ctx ends (while etcd is
// unavailable, the revocation goes on after that, until the Store is
// closed); the leadership is lost either way. Calling it again returns the
// first result.
func (l *Leadership) Resign(ctx context.Context) error {
	l.c.lose("resigned")
	select {
	case <-l.c.done:
	case <-ctx.Done():
		return fmt.Errorf("etcdstore: resign %s: %w", l.id, ctx.Err())
	}
	l.c.mu.Lock()
	err := l.c.revokeErr
	l.c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("etcdstore: resign %s: %w", l.id, l.s.wrap("revoke", err))
	}
	return nil
}

// Put sets a table's row key to val, if this head still leads; if not, it
// writes nothing and returns ErrNotLeader. While etcd is unavailable it
// waits and tries again until ctx ends or the leadership is lost. A Put
// that was cut short by either may or may not have been applied; one that
// returned nil was, and survives etcd restarts.
func (l *Leadership) Put(ctx context.Context, table, key string, val []byte) error {
	if err := checkTable(table); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("etcdstore: put in %s: empty key", table)
	}
	return l.write(ctx, "put "+table+"/"+key, clientv3.OpPut(l.s.tablePrefix(table)+key, string(val)))
}

// Delete removes a table's row key, which need not exist, if this head
// still leads; otherwise as Put.
func (l *Leadership) Delete(ctx context.Context, table, key string) error {
	if err := checkTable(table); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("etcdstore: delete in %s: empty key", table)
	}
	return l.write(ctx, "delete "+table+"/"+key, clientv3.OpDelete(l.s.tablePrefix(table)+key))
}

// write applies op in a Txn guarded by the leader's election key: it is
// applied only if the key this leadership created is still there. Trying
// again after an error is safe: op sets or deletes, so applying it twice
// is applying it once.
func (l *Leadership) write(ctx context.Context, what string, op clientv3.Op) error {
	select {
	case <-l.c.lost:
		return fmt.Errorf("etcdstore: %s: %w (%s)", what, ErrNotLeader, l.c.cause())
	default:
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(l.c.ctx, cancel)()
	guard := clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.term)
	for n := 0; ; n++ {
		resp, err := l.s.client.Txn(wctx).If(guard).Then(op).Commit()
		switch {
		case err == nil && resp.Succeeded:
			return nil
		case err == nil:
			// Lost is closed by the time the caller hears of it.
			l.c.lose("another head leads")
			<-l.c.lost
			return fmt.Errorf("etcdstore: %s: %w (another head leads)", what, ErrNotLeader)
		case l.c.ctx.Err() != nil:
			return fmt.Errorf("etcdstore: %s: %w (%s)", what, ErrNotLeader, l.c.cause())
		case ctx.Err() != nil:
			return fmt.Errorf("etcdstore: %s: %w", what, ctx.Err())
		case !unavailable(err):
			return l.s.wrap(what, err)
		}
		wait := retryWait(n, time.Second)
		l.c.log.Warn("etcd unavailable; trying again", "op", what, "err", err, "in", wait)
		if !sleep(wctx, wait) && l.c.ctx.Err() != nil {
			return fmt.Errorf("etcdstore: %s: %w (%s)", what, ErrNotLeader, l.c.cause())
		} else if ctx.Err() != nil {
			return fmt.Errorf("etcdstore: %s: %w", what, ctx.Err())
		}
	}
}
