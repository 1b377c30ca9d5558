package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// ErrNotLeader is returned (wrapped) by Leadership.Put and Delete when
	// the candidate no longer leads: nothing was written.
	ErrNotLeader = errors.New("etcdstore: not the leader")
	// ErrClosed is returned (wrapped) by a Store's methods after Close.
	ErrClosed = errors.New("etcdstore: store closed")
)

const (
	// Keep-alive pings on an idle connection find an etcd that went away
	// without closing it (a lost host). gRPC allows no less than 10s, and
	// etcd's default enforcement policy accepts it.
	keepAliveTime    = 10 * time.Second
	keepAliveTimeout = 5 * time.Second
	// maxRedial caps gRPC's wait between attempts to reconnect, so that a
	// restarted etcd is found within a second (gRPC's default is 2
	// minutes).
	maxRedial = time.Second
)

// Store is a connection to the etcd cluster that keeps the tables, and the
// place heads campaign. It is safe for concurrent use.
type Store struct {
	cfg    Config
	client *clientv3.Client
	log    *slog.Logger
	ttl    int64 // cfg.TTL in seconds

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // goroutines of candidacies
}

// Member is a head that campaigns or leads.
type Member struct {
	// ID is the head's ID, as given to Campaign.
	ID string
	// Addr is the address the head advertises, as given to Campaign.
	Addr string
	// Leader tells the active head from the standbys.
	Leader bool
}

// candidate is what an election key holds.
type candidate struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// Open connects to etcd and checks that it answers within
// cfg.DialTimeout. log receives what the store does and, at the debug
// level, what etcd's client says; nil logs nothing.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("etcd", strings.Join(cfg.Endpoints, ","))
	client, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		Logger:               zapLogger(log),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxRedial},
			MinConnectTimeout: cfg.DialTimeout,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: connect to etcd at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := client.Get(pctx, cfg.Prefix, clientv3.WithCountOnly()); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("etcdstore: no answer from etcd at %s within %s (is it running?): %w", strings.Join(cfg.Endpoints, ","), cfg.DialTimeout, err)
	}
	return &Store{cfg: cfg, client: client, log: log, ttl: int64(cfg.TTL / time.Second)}, nil
}

// Close disconnects from etcd and waits for the store's goroutines. It
// does not resign: a Leadership is lost at once here, but on the server
// its lease runs out as if the process had died, so a standby takes over
// after the TTL. Call Leadership.Resign first for a quick handover.
// Calling Close again does nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.client.Close()
	s.wg.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcdstore: close: %w", err)
	}
	return nil
}

// goroutine runs f on a goroutine that Close waits for; false after Close.
func (s *Store) goroutine(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// checkOpen is ErrClosed after Close: the client would take seconds to
// say so.
func (s *Store) checkOpen(what string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("etcdstore: %s: %w", what, ErrClosed)
	}
	return nil
}

// Config is the store's configuration with its zero values filled in.
func (s *Store) Config() Config { return s.cfg }

func (s *Store) electionPrefix() string { return s.cfg.Prefix + "election" }

func (s *Store) tablePrefix(table string) string { return s.cfg.Prefix + "tables/" + table + "/" }

func checkTable(table string) error {
	if table == "" || strings.Contains(table, "/") {
		return fmt.Errorf("etcdstore: table name %q must be non-empty without '/'", table)
	}
	return nil
}

// List returns a table's rows by key; an empty table (or one never
// written) is an empty map. It waits for etcd while it is unavailable,
// until ctx ends.
func (s *Store) List(ctx context.Context, table string) (map[string][]byte, error) {
	if err := checkTable(table); err != nil {
		return nil, err
	}
	if err := s.checkOpen("list " + table); err != nil {
		return nil, err
	}
	pfx := s.tablePrefix(table)
	resp, err := s.client.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		return nil, s.wrap("list "+table, err)
	}
	rows := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		rows[strings.TrimPrefix(string(kv.Key), pfx)] = kv.Value
	}
	return rows, nil
}

// Leader returns the leading head's ID and address, or "" and "" while
// none leads.
func (s *Store) Leader(ctx context.Context) (id, addr string, err error) {
	if err := s.checkOpen("leader"); err != nil {
		return "", "", err
	}
	// What concurrency.Election.Leader does, without a session of ours.
	resp, err := s.client.Get(ctx, s.electionPrefix()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", "", s.wrap("leader", err)
	}
	if len(resp.Kvs) == 0 {
		return "", "", nil
	}
	var c candidate
	if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
		return "", "", fmt.Errorf("etcdstore: leader key %s: %w", resp.Kvs[0].Key, err)
	}
	return c.ID, c.Addr, nil
}

// Members lists the heads that campaign: the leader first, then the
// standbys in the order they would take over. A head appears once its
// Campaign has started and until its Leadership is lost or its Campaign
// returned without one.
func (s *Store) Members(ctx context.Context) ([]Member, error) {
	if err := s.checkOpen("members"); err != nil {
		return nil, err
	}
	resp, err := s.client.Get(ctx, s.electionPrefix()+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, s.wrap("members", err)
	}
	members := make([]Member, 0, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		var c candidate
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			return nil, fmt.Errorf("etcdstore: election key %s: %w", kv.Key, err)
		}
		members = append(members, Member{ID: c.ID, Addr: c.Addr, Leader: i == 0})
	}
	return members, nil
}

// wrap prefixes err with what failed, as ErrClosed when the store is.
func (s *Store) wrap(what string, err error) error {
	if s.client.Ctx().Err() != nil {
		return fmt.Errorf("etcdstore: %s: %w", what, ErrClosed)
	}
	return fmt.Errorf("etcdstore: %s: %w", what, err)
}

// unavailable reports whether err is etcd being away or without a leader
// for now (gRPC's Unavailable, which etcd's own timeouts and "no leader"
// also are, or a deadline etcd gave up on), so that trying again later may
// work.
func unavailable(err error) bool {
	var code codes.Code
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else {
		code = status.Code(err)
	}
	return code == codes.Unavailable || code == codes.DeadlineExceeded
}

// retryWait is the pause before attempt n+1 of something etcd refused:
// from 50ms, doubling, at most max.
func retryWait(n int, max time.Duration) time.Duration {
	d := 50 * time.Millisecond << min(n, 10)
	return min(d, max)
}

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
