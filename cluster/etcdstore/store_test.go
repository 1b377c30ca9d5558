package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/rtrain/rtrain/cluster/etcdstore"
	"github.com/rtrain/rtrain/internal/etcdserver"
	"github.com/rtrain/rtrain/internal/testutil"
)

func TestTables(t *testing.T) {
	srv := etcd(t)
	s := open(t, srv, 0)
	ctx := timeout(t, 30*time.Second)
	l := lead(t, s, "a", 30*time.Second)

	rows, err := s.List(ctx, "jobs")
	require.NoError(t, err)
	require.Empty(t, rows)

	require.NoError(t, l.Put(ctx, "jobs", "j1", []byte(`{"id":"j1"}`)))
	require.NoError(t, l.Put(ctx, "jobs", "j2", []byte("two")))
	require.NoError(t, l.Put(ctx, "jobs", "j2", []byte("2")))
	require.NoError(t, l.Put(ctx, "nodes", "n1", nil))
	// A table whose name is another's prefix stays apart.
	require.NoError(t, l.Put(ctx, "jobsx", "j9", []byte("x")))
	require.NoError(t, l.Delete(ctx, "jobs", "j1"))
	require.NoError(t, l.Delete(ctx, "jobs", "never"))

	rows, err = s.List(ctx, "jobs")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"j2": []byte("2")}, rows)
	rows, err = s.List(ctx, "nodes")
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Empty(t, rows["n1"])

	// Another head (a standby) reads the same table.
	rows, err = open(t, srv, 0).List(ctx, "jobs")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"j2": []byte("2")}, rows)

	// Another cluster sharing the etcd, under another prefix, does not.
	other, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: srv.Endpoints(), Prefix: "/other"}, nil)
	require.NoError(t, err)
	defer other.Close()
	rows, err = other.List(ctx, "jobs")
	require.NoError(t, err)
	require.Empty(t, rows)

	for name, call := range map[string]func() error{
		"put empty table":  func() error { return l.Put(ctx, "", "k", nil) },
		"put table with /": func() error { return l.Put(ctx, "a/b", "k", nil) },
		"put empty key":    func() error { return l.Put(ctx, "jobs", "", nil) },
		"delete empty key": func() error { return l.Delete(ctx, "jobs", "") },
		"list empty table": func() error { _, err := s.List(ctx, ""); return err },
	} {
		t.Run(name, func(t *testing.T) { require.Error(t, call()) })
	}
}

// TestElection: one candidate leads, the second waits as a standby and
// takes over when the first resigns; the first can no longer write.
func TestElection(t *testing.T) {
	srv := etcd(t)
	sa, sb := open(t, srv, 0), open(t, srv, 0)
	ctx := timeout(t, time.Minute)

	id, addr, err := sa.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, "", id+addr, "leader before any campaign")

	a := lead(t, sa, "a", 30*time.Second)
	require.Equal(t, "a", a.ID())
	id, addr, err = sb.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "a.example:7070"}, []string{id, addr})

	bc := campaign(ctx, sb, "b")
	waitMembers(t, sa, "a", "b")
	select {
	case r := <-bc:
		t.Fatalf("b's Campaign returned (%v) while a leads", r.err)
	case <-time.After(time.Second):
	}
	require.False(t, closed(a.Lost()))
	require.NoError(t, a.Put(ctx, "jobs", "j1", []byte("by a")))

	resigned := time.Now()
	require.NoError(t, a.Resign(ctx))
	require.True(t, closed(a.Lost()), "a's Lost after Resign")
	require.Equal(t, "resigned", a.Why())
	r := <-bc
	require.NoError(t, r.err)
	b := r.l
	t.Logf("b leads %s after a resigned", r.at.Sub(resigned))
	require.Less(t, r.at.Sub(resigned), 2*time.Second, "takeover after a resignation")
	require.Greater(t, b.Term(), a.Term())
	require.NoError(t, a.Resign(ctx), "a second Resign")

	err = a.Put(ctx, "jobs", "j1", []byte("by a, deposed"))
	require.ErrorIs(t, err, etcdstore.ErrNotLeader)
	require.NoError(t, b.Put(ctx, "jobs", "j2", []byte("by b")))
	rows, err := sa.List(ctx, "jobs")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"j1": []byte("by a"), "j2": []byte("by b")}, rows)
	waitMembers(t, sa, "b")

	// a campaigns again and is b's standby.
	ac := campaign(ctx, sa, "a")
	waitMembers(t, sb, "b", "a")
	require.NoError(t, b.Resign(ctx))
	r = <-ac
	require.NoError(t, r.err)
	require.Greater(t, r.l.Term(), b.Term())
}

// TestFailover: a leader dies without resigning; the standby takes over
// within about the TTL, and the dead leader can never write again. The
// deaths: its process is gone (its client closes, its lease runs out on
// the server), or an operator revoked its lease while it ran (it has not
// heard yet when the standby already leads).
func TestFailover(t *testing.T) {
	const ttl = 2 * time.Second
	for name, kill := range map[string]func(t *testing.T, srv *etcdserver.Server, s *etcdstore.Store){
		"process gone": func(t *testing.T, _ *etcdserver.Server, s *etcdstore.Store) {
			require.NoError(t, s.Close())
		},
		"lease revoked": func(t *testing.T, srv *etcdserver.Server, _ *etcdstore.Store) {
			c := raw(t, srv)
			ctx := timeout(t, 10*time.Second)
			resp, err := c.Get(ctx, "/rtrain/election/", clientv3.WithFirstCreate()...)
			require.NoError(t, err)
			require.Len(t, resp.Kvs, 1)
			_, err = c.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
			require.NoError(t, err)
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := etcd(t)
			sa, sb := open(t, srv, ttl), open(t, srv, ttl)
			ctx := timeout(t, time.Minute)
			a := lead(t, sa, "a", 30*time.Second)
			require.NoError(t, a.Put(ctx, "jobs", "j", []byte("a")))
			bc := campaign(ctx, sb, "b")
			waitMembers(t, sb, "a", "b")
			// At any point between two renewals (one a second).
			time.Sleep(rand.N(time.Second))

			died := time.Now()
			kill(t, srv, sa)
			r := <-bc
			require.NoError(t, r.err)
			took := r.at.Sub(died)
			t.Logf("failover (%s, TTL %s): b leads %s after a died", name, ttl, took.Round(time.Millisecond))
			// The lease's TTL from its last renewal, etcd's half-second
			// expiry sweep and a loaded machine's slack.
			require.Less(t, took, ttl+2*time.Second)

			// The old leader cannot write: at once with ErrNotLeader,
			// whether or not it has noticed.
			err := a.Put(ctx, "jobs", "j", []byte("a, deposed"))
			require.ErrorIs(t, err, etcdstore.ErrNotLeader)
			require.True(t, closed(a.Lost()), "a's Lost after a refused write")
			require.NoError(t, r.l.Put(ctx, "jobs", "j", []byte("b")))
			rows, err := sb.List(ctx, "jobs")
			require.NoError(t, err)
			require.Equal(t, "b", string(rows["j"]))
			waitMembers(t, sb, "b")
		})
	}
}

// TestLostWhenRenewalsStop: a leader whose renewals stop coming back (etcd
// killed) knows it lost on its own, within four fifths of the TTL: before
// etcd could have expired its lease and a standby could lead.
func TestLostWhenRenewalsStop(t *testing.T) {
	const ttl = 2 * time.Second
	srv := etcd(t)
	s := open(t, srv, ttl)
	ctx := timeout(t, time.Minute)
	a := lead(t, s, "a", 30*time.Second)
	// At any point between two renewals (one a second).
	time.Sleep(rand.N(time.Second))
	stopped := time.Now()
	srv.Kill()
	select {
	case <-a.Lost():
		took := time.Since(stopped)
		t.Logf("lost %s after etcd went away (%s): %s", took.Round(time.Millisecond), a.Why(), ttl)
		// Lost comes four fifths of the TTL after the last renewal
		// came back, which was before etcd went away; and a timer's
		// slack on a busy machine.
		assert.LessOrEqual(t, took, ttl*4/5+200*time.Millisecond)
		assert.Equal(t, "no lease renewal came back in time", a.Why())
	case <-time.After(2 * ttl):
		t.Fatal("Lost not closed two TTLs after etcd went away")
	}
	err := a.Put(ctx, "jobs", "j", []byte("x"))
	require.ErrorIs(t, err, etcdstore.ErrNotLeader)
	require.NoError(t, srv.Restart(ctx))
	// It wins again once etcd is back.
	b := lead(t, s, "a", 30*time.Second)
	require.Greater(t, b.Term(), a.Term())
	require.NoError(t, b.Put(ctx, "jobs", "j", []byte("y")))
}

// TestEtcdRestart: etcd crashes and comes back on the same data. A leader
// with a TTL longer than the outage keeps leading; a write made during the
// outage waits and lands; nothing written before is lost.
func TestEtcdRestart(t *testing.T) {
	const ttl = 10 * time.Second
	srv := etcd(t)
	sa, sb := open(t, srv, ttl), open(t, srv, ttl)
	ctx := timeout(t, 2*time.Minute)
	a := lead(t, sa, "a", 30*time.Second)
	for i := range 20 {
		require.NoError(t, a.Put(ctx, "jobs", fmt.Sprint(i), []byte("before")))
	}
	bc := campaign(ctx, sb, "b")
	waitMembers(t, sa, "a", "b")

	srv.Kill()
	killed := time.Now()
	put := make(chan error, 1)
	go func() { put <- a.Put(ctx, "jobs", "during", []byte("outage")) }()
	select {
	case err := <-put:
		t.Fatalf("Put returned %v while etcd was down", err)
	case <-time.After(time.Second):
	}
	require.NoError(t, srv.Restart(ctx))
	restarted := time.Now()
	require.NoError(t, <-put)
	t.Logf("etcd down for %s; the write made during the outage landed %s after it was back",
		restarted.Sub(killed).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	back := time.Since(killed)

	require.False(t, closed(a.Lost()), "a lost its leadership to a %s outage with TTL %s: %s", back, ttl, a.Why())
	select {
	case r := <-bc:
		t.Fatalf("b's Campaign returned (%v) while a leads", r.err)
	default:
	}
	rows, err := sb.List(ctx, "jobs")
	require.NoError(t, err)
	require.Len(t, rows, 21)
	require.Equal(t, "outage", string(rows["during"]))
	require.NoError(t, a.Put(ctx, "jobs", "after", []byte("restart")))
	waitMembers(t, sb, "a", "b")
	require.NoError(t, a.Resign(ctx))
	r := <-bc
	require.NoError(t, r.err)
}

// TestEtcdOutageLongerThanTTL: an outage longer than the TTL costs the
// leader its leadership (it notices on its own, with etcd unreachable);
// once etcd is back exactly one of the heads that campaign again leads,
// and the data are there.
func TestEtcdOutageLongerThanTTL(t *testing.T) {
	const ttl = 2 * time.Second
	srv := etcd(t)
	sa, sb := open(t, srv, ttl), open(t, srv, ttl)
	ctx := timeout(t, 2*time.Minute)
	a := lead(t, sa, "a", 30*time.Second)
	require.NoError(t, a.Put(ctx, "jobs", "j", []byte("before")))
	bc := campaign(ctx, sb, "b")
	waitMembers(t, sa, "a", "b")

	srv.Kill()
	select {
	case <-a.Lost():
	case <-time.After(2 * ttl):
		t.Fatal("a still leads two TTLs into the outage")
	}
	require.ErrorIs(t, a.Put(ctx, "jobs", "j", []byte("lost")), etcdstore.ErrNotLeader)
	ac := campaign(ctx, sa, "a")
	time.Sleep(ttl) // the outage goes on past the TTL
	require.NoError(t, srv.Restart(ctx))

	var standby <-chan result
	var won result
	select {
	case won = <-ac:
		standby = bc
	case won = <-bc:
		standby = ac
	case <-time.After(30 * time.Second):
		t.Fatal("nobody leads 30s after etcd came back")
	}
	require.NoError(t, won.err)
	require.Greater(t, won.l.Term(), a.Term())
	select {
	case r := <-standby:
		t.Fatalf("both lead: the other Campaign returned %v", r.err)
	case <-time.After(ttl):
	}
	rows, err := sb.List(ctx, "jobs")
	require.NoError(t, err)
	require.Equal(t, "before", string(rows["j"]))
	require.NoError(t, won.l.Put(ctx, "jobs", "j", []byte("after")))
	require.NoError(t, won.l.Resign(ctx))
	r := <-standby
	require.NoError(t, r.err)
}

// TestCampaignEnds: a standby's Campaign ends with its ctx, or when its
// store closes, and leaves the election.
func TestCampaignEnds(t *testing.T) {
	srv := etcd(t)
	sa := open(t, srv, 0)
	lead(t, sa, "a", 30*time.Second)

	sb := open(t, srv, 0)
	bctx, cancel := context.WithCancel(context.Background())
	bc := campaign(bctx, sb, "b")
	waitMembers(t, sa, "a", "b")
	cancel()
	r := <-bc
	require.ErrorIs(t, r.err, context.Canceled)
	waitMembers(t, sa, "a")

	sc, err := etcdstore.Open(timeout(t, 30*time.Second), etcdstore.Config{Endpoints: srv.Endpoints()}, logger(t))
	require.NoError(t, err)
	cc := campaign(context.Background(), sc, "c")
	waitMembers(t, sa, "a", "c")
	require.NoError(t, sc.Close())
	r = <-cc
	require.ErrorIs(t, r.err, etcdstore.ErrClosed)
	require.NoError(t, sc.Close(), "a second Close")
	_, err = sc.Campaign(context.Background(), "c", "")
	require.ErrorIs(t, err, etcdstore.ErrClosed)
	_, err = sc.List(context.Background(), "jobs")
	require.ErrorIs(t, err, etcdstore.ErrClosed)

	_, err = sa.Campaign(context.Background(), "", "x")
	require.Error(t, err, "empty ID")
	require.False(t, errors.Is(err, etcdstore.ErrClosed))
}

// BenchmarkFailover measures how long a standby takes to lead after the
// leader's process died (its store closed without resigning), with a TTL
// of 2s: go test -run '^$' -bench Failover -benchtime 5x.
func BenchmarkFailover(b *testing.B) {
	const ttl = 2 * time.Second
	srv := testutil.Etcd(b, etcdserver.Options{})
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		sa, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: srv.Endpoints(), TTL: ttl}, nil)
		require.NoError(b, err)
		sb, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: srv.Endpoints(), TTL: ttl}, nil)
		require.NoError(b, err)
		_, err = sa.Campaign(ctx, "a", "")
		require.NoError(b, err)
		bc := campaign(ctx, sb, "b")
		require.Eventually(b, func() bool {
			ms, err := sb.Members(ctx)
			return err == nil && len(ms) == 2
		}, 10*time.Second, 10*time.Millisecond)
		time.Sleep(rand.N(time.Second)) // at any point between two renewals
		b.StartTimer()
		died := time.Now()
		require.NoError(b, sa.Close())
		r := <-bc
		require.NoError(b, r.err)
		took := r.at.Sub(died)
		b.StopTimer()
		total += took
		require.NoError(b, r.l.Resign(ctx))
		require.NoError(b, sb.Close())
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/failover")
}
