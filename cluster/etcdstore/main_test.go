package etcdstore_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/rtrain/rtrain/cluster/etcdstore"
	"github.com/rtrain/rtrain/internal/etcdserver"
	"github.com/rtrain/rtrain/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// etcd starts a real etcd for t.
func etcd(t *testing.T) *etcdserver.Server {
	t.Helper()
	return testutil.Etcd(t, etcdserver.Options{})
}

// open opens a store on srv with the given TTL, closed when t ends. Each
// call is a separate client, as a separate head process would have.
func open(t *testing.T, srv *etcdserver.Server, ttl time.Duration) *etcdstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: srv.Endpoints(), TTL: ttl}, logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// logger writes the store's log into the test's output.
func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// raw is a plain etcd client, for a test to look behind the store or do
// what an operator would.
func raw(t *testing.T, srv *etcdserver.Server) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// campaign runs Campaign on a goroutine; its result arrives on the
// channel.
type result struct {
	l   *etcdstore.Leadership
	err error
	at  time.Time
}

func campaign(ctx context.Context, s *etcdstore.Store, id string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := s.Campaign(ctx, id, id+".example:7070")
		ch <- result{l, err, time.Now()}
	}()
	return ch
}

// lead campaigns and fails t unless s leads within d.
func lead(t *testing.T, s *etcdstore.Store, id string, d time.Duration) *etcdstore.Leadership {
	t.Helper()
	l, err := s.Campaign(timeout(t, d), id, id+".example:7070")
	require.NoError(t, err)
	return l
}

// waitMembers polls until Members lists exactly ids, leader first.
func waitMembers(t *testing.T, s *etcdstore.Store, ids ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ms, err := s.Members(ctx)
		if err != nil {
			return false
		}
		var got []string
		for i, m := range ms {
			if m.Leader != (i == 0) || m.Addr != m.ID+".example:7070" {
				return false
			}
			got = append(got, m.ID)
		}
		return strings.Join(got, ",") == strings.Join(ids, ",")
	}, 20*time.Second, 20*time.Millisecond, "members, want %v", ids)
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
