package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrLocked is wrapped by the *LockedError that Locker.Lock returns
	// while another holder has the lock.
	ErrLocked = errors.New("locked by another writer")
	// ErrLockLost is returned (wrapped) by Lock.Renew once the lock is no
	// longer this holder's: it lapsed and another holder took it, or it
	// was removed behind the holder's back. The holder must stop writing.
	ErrLockLost = errors.New("lock lost")
)

// Holder says who holds a lock. It is stored with the lock, so that a
// writer that is refused can say whom it waits for.
type Holder struct {
	// ID names the holder for people, e.g. a job ID. May be empty.
	ID string `json:"id,omitempty"`
	// Host and PID are the holder's machine and process.
	Host string `json:"host,omitempty"`
	PID  int    `json:"pid,omitempty"`
	// Since is when the lock was taken. With ID, Host and PID it tells
	// one Lock call's lock from another's.
	Since time.Time `json:"since"`
	// Expires is when the lock lapses unless renewed, by the holder's
	// clock; zero for a lock that lasts as long as its holder's process.
	Expires time.Time `json:"expires,omitzero"`
	// Successor, on the Holder given to Lock, takes over a lock held under
	// the same ID by another process without waiting for it to lapse: the
	// head that adopts a job (it restarted, or took over) goes on writing
	// that job's run. Not stored.
	Successor bool `json:"-"`
}

// Same reports whether h and o are one Lock call's lock: the same holder
// taking the same lock, whatever its renewals changed.
func (h Holder) Same(o Holder) bool {
	return h.ID == o.ID && h.Host == o.Host && h.PID == o.PID && h.Since.Equal(o.Since)
}

// String describes h in a few words: "job 1a2b (pid 42 on host gpu-3,
// since 15:04:05)".
func (h Holder) String() string {
	var who []string
	if h.ID != "" {
		who = append(who, "job "+h.ID)
	}
	var where []string
	if h.PID != 0 {
		where = append(where, "pid "+strconv.Itoa(h.PID))
	}
	if h.Host != "" {
		where = append(where, "on host "+h.Host)
	}
	var detail []string
	if len(where) > 0 {
		detail = append(detail, strings.Join(where, " "))
	}
	if !h.Since.IsZero() {
		detail = append(detail, "since "+h.Since.Local().Format(time.TimeOnly))
	}
	if len(detail) > 0 {
		who = append(who, "("+strings.Join(detail, ", ")+")")
	}
	if len(who) == 0 {
		return "an unknown holder"
	}
	return strings.Join(who, " ")
}

// LockedError is the error of a Lock that another holder has.
type LockedError struct {
	// URI is where the lock is.
	URI string
	// Holder is who has it; zero when that could not be read (it is being
	// taken this very moment).
	Holder Holder
}

func (e *LockedError) Error() string {
	msg := fmt.Sprintf("%s is held by %s", e.URI, e.Holder)
	if !e.Holder.Expires.IsZero() {
		msg += fmt.Sprintf("; if that process is gone, its lock lapses at %s", e.Holder.Expires.Local().Format(time.TimeOnly))
	}
	return msg
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Locker is an optional capability of a Storage, found by type assertion:
// a lock that one holder at a time has, across processes and machines,
// so that one writer at a time changes what lies under a prefix. Nothing
// else in the Storage heeds it; it only keeps out writers that take it
// too.
type Locker interface {
	// Lock takes the lock at key for h (Since and Expires are filled in),
	// or fails with a *LockedError while another holder has it. ttl is how
	// long the lock holds without a Renew, so that a holder that crashed
	// lets go of it within ttl; backends whose locks end with the process
	// that holds them ignore it. A lock whose Expires has passed by this
	// machine's clock is taken over: holders' clocks must agree to well
	// within ttl.
	Lock(ctx context.Context, key string, h Holder, ttl time.Duration) (Lock, error)
}

// Lock is a lock taken with Locker.Lock.
type Lock interface {
	// Renew extends the lock to ttl from now. It fails with an error
	// wrapping ErrLockLost once the lock is someone else's; any other
	// error (the storage unreachable) may pass on a later try.
	Renew(ctx context.Context) error
	// Expires is when the lock lapses if it is not renewed, as of the
	// last successful Lock or Renew, by this machine's clock; zero for a
	// lock that lasts as long as this process.
	Expires() time.Time
	// Unlock lets go of the lock. A lock that was lost is left to whoever
	// has it now.
	Unlock(ctx context.Context) error
}
