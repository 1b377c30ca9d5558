package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/rtrain/rtrain/checkpoint/storage"
)

// LeaseName is the run's lease, <run>/.rtrain-lease: a lock file in a
// directory, a lease object on S3. It is no checkpoint and List, Runs and
// Prune pass it by.
const LeaseName = ".rtrain-lease"

// DefaultLeaseTTL is LeaseOptions.TTL's default.
const DefaultLeaseTTL = 30 * time.Second

// LeaseOptions are a run's lease's settings.
type LeaseOptions struct {
	// ID names this writer to one that is refused, e.g. a job ID. Empty:
	// the host and pid say who it is.
	ID string
	// TTL is how long the lease holds without renewal where it has to be
	// renewed (S3; a lock on a directory ends with its process): a writer
	// that crashed keeps others off the run that long. The lease is
	// renewed every TTL/3, and writes stop once TTL/3 is all that is left
	// of it. 0 means DefaultLeaseTTL.
	TTL time.Duration
	// Successor takes the lease over from another process that holds it
	// under the same ID, without waiting for it to lapse (see
	// storage.Holder's Successor).
	Successor bool
}

// Holder says who holds a run's lease; see LockedError.
type Holder = storage.Holder

// LockedError is what Lock returns (wrapped) while another writer holds
// the run's lease. It wraps ErrLocked.
type LockedError = storage.LockedError

var (
	// ErrLocked is wrapped by Lock's error while another writer holds the
	// run's lease.
	ErrLocked = storage.ErrLocked
	// ErrLockLost is wrapped by the errors of Commit, Prune, Delete and
	// LockErr once the run's lease is no longer this Run's: another writer
	// took it over after it lapsed, or it was removed by hand. Trying
	// again does not help; Lock again, which says who has it.
	ErrLockLost = storage.ErrLockLost
)

// lease is a held storage lock and the goroutine that renews it.
type lease struct {
	lock   storage.Lock
	uri    string
	ttl    time.Duration
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed when keep returns

	mu      sync.Mutex
	lost    error     // set once, wraps ErrLockLost
	expires time.Time // as of the last renewal; zero: never
}

// Lock takes the run's lease, so that one process at a time writes the
// run: of two that try at once, one gets it and the other an error
// wrapping a *LockedError (ErrLocked) that says who has it. A lease left
// by a process that crashed is taken over once it lapses (at once on a
// directory, within TTL on S3). A goroutine renews the lease until
// Unlock, which releases it; call Unlock when done.
//
// While this Run holds a lease, Commit, Prune and Delete refuse to write
// once it is lost (ErrLockLost) or while it could not be renewed in time.
// Runs that never Lock write without looking at any lease: every writer
// of a run must Lock for it to keep the others out. A Storage that cannot
// lock (not a storage.Locker, e.g. a wrapper) gets no lease; Lock logs so
// and returns nil.
func (r *Run) Lock(ctx context.Context, opts LeaseOptions) error {
	ttl := opts.TTL
	switch {
	case ttl == 0:
		ttl = DefaultLeaseTTL
	case ttl < 0:
		return fmt.Errorf("checkpoint: lock %s: negative TTL %s", r.URI(), ttl)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease != nil {
		return fmt.Errorf("checkpoint: lock %s: this Run already holds its lease", r.URI())
	}
	locker, ok := r.storage.(storage.Locker)
	if !ok {
		r.log().Warn("storage cannot lock runs: nothing keeps a second writer out", "uri", r.URI())
		return nil
	}
	host, _ := os.Hostname()
	key := joinKey(r.name, LeaseName)
	lk, err := locker.Lock(ctx, key, storage.Holder{ID: opts.ID, Host: host, PID: os.Getpid(), Successor: opts.Successor}, ttl)
	if err != nil {
		return fmt.Errorf("checkpoint: lock run %s: %w", r.URI(), err)
	}
	// The lease lives until Unlock, not as long as the ctx of this call.
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &lease{
		lock: lk, uri: r.storage.URI(key), ttl: ttl, log: r.log(),
		cancel: cancel, done: make(chan struct{}), expires: lk.Expires(),
	}
	go l.keep(kctx)
	r.lease = l
	r.log().Debug("run locked", "uri", l.uri, "ttl", ttl)
	return nil
}

// Unlock stops renewing the run's lease and releases it; without one it
// does nothing. A lease that was lost is left to its new holder.
func (r *Run) Unlock(ctx context.Context) error {
	r.mu.Lock()
	l := r.lease
	r.lease = nil
	r.mu.Unlock()
	if l == nil {
		return nil
	}
	l.cancel()
	<-l.done
	l.mu.Lock()
	lost := l.lost
	l.mu.Unlock()
	if lost != nil {
		return nil // not ours to release
	}
	if err := l.lock.Unlock(ctx); err != nil {
		return fmt.Errorf("checkpoint: unlock run %s: %w", r.URI(), err)
	}
	r.log().Debug("run unlocked", "uri", l.uri)
	return nil
}

// LockErr is nil while the Run holds its lease, or never took one. Once
// the lease is lost it is an error wrapping ErrLockLost; while the lease
// could not be renewed in time (storage unreachable), another error,
// which goes once a renewal gets through.
func (r *Run) LockErr() error {
	r.mu.Lock()
	l := r.lease
	r.mu.Unlock()
	if l == nil {
		return nil
	}
	return l.err()
}

func (l *lease) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return fmt.Errorf("checkpoint: %w; another writer may be writing the run", l.lost)
	}
	// The last third of the lease is left for a write that started before
	// it to land before anyone may take the lease over.
	if !l.expires.IsZero() && time.Now().After(l.expires.Add(-l.ttl/3)) {
		return fmt.Errorf("checkpoint: lease %s not renewed in time (storage unreachable?); writes wait for a renewal", l.uri)
	}
	return nil
}

// keep renews the lease every ttl/3 until ctx ends or the lease is lost,
// retrying a failed renewal every second meanwhile.
func (l *lease) keep(ctx context.Context) {
	defer close(l.done)
	every := l.ttl / 3
	wait := every
	failing := false
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		err := l.lock.Renew(rctx)
		cancel()
		switch {
		case err == nil:
			l.mu.Lock()
			l.expires = l.lock.Expires()
			l.mu.Unlock()
			if failing {
				l.log.Info("run lease renewed again", "uri", l.uri)
			}
			wait, failing = every, false
		case errors.Is(err, ErrLockLost):
			l.mu.Lock()
			l.lost = err
			l.mu.Unlock()
			l.log.Warn("run lease lost", "uri", l.uri, "err", err)
			return
		case ctx.Err() != nil:
			return
		default:
			// Once per outage, not once a second.
			if !failing {
				l.log.Warn("renewing the run lease failed; trying again every second", "uri", l.uri, "err", err)
			} else {
				l.log.Debug("renewing the run lease failed again", "uri", l.uri, "err", err)
			}
			wait, failing = min(every, time.Second), true
		}
		t.Reset(wait)
	}
}
