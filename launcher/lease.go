package launcher

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A worker must not outlive the right to run that its agent holds from the
// head: when the agent stops renewing (frozen by SIGSTOP, cut off, stuck),
// the head moves the worker's rank elsewhere, and the old copy would train
// on beside the new one. The agent cannot be trusted to stop it (it is the
// part that froze), so each worker's reaper, a process of its own, watches
// the lease and kills the worker once it lapses.

// leaseEnv names the lease file a reaper watches.
const leaseEnv = "RTRAIN_REAPER_LEASE"

// leasePoll is how often a reaper reads its lease: the head waits this
// much, and more, past a lease's deadline before it moves the worker.
const leasePoll = 100 * time.Millisecond

// LeaseSlack is how long after a lease's deadline its workers are
// certainly dead: the reaper's poll, the kill, and scheduling delay.
const LeaseSlack = time.Second

// LeaseNow is the clock leases are kept in: CLOCK_BOOTTIME, which every
// process of the machine shares and which, unlike the monotonic clock,
// goes on while the machine is suspended (as the head's does).
func LeaseNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Lease is a file holding a deadline on LeaseNow's clock; workers started
// with Spec.Lease naming it are killed by their reaper once it passes.
type Lease struct{ path string }

// NewLease returns the lease kept at path. The file is written by Renew.
func NewLease(path string) *Lease { return &Lease{path: path} }

// Path is the lease file, for Spec.Lease.
func (l *Lease) Path() string { return l.path }

// Renew moves the deadline to from+ttl. from is when the proof of the
// right to run was asked for (LeaseNow before a heartbeat), not when it
// came back: the head counts from when it heard the agent, which is later.
func (l *Lease) Renew(from, ttl time.Duration) error {
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(int64(from+ttl), 10)+"\n"), 0o644); err != nil {
		return fmt.Errorf("launcher: lease: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return fmt.Errorf("launcher: lease: %w", err)
	}
	return nil
}

// errNoLease is a lease file that is missing or unreadable.
var errNoLease = errors.New("launcher: no lease")

func readLease(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, errNoLease
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, errNoLease
	}
	return time.Duration(n), nil
}

// watchLease closes lapsed once the lease at path passes its deadline.
// A file that cannot be read keeps the last deadline read: deleting it
// does not free a worker; one never read fences nothing.
func watchLease(path string, stop <-chan struct{}, lapsed chan<- struct{}) {
	t := time.NewTicker(leasePoll)
	defer t.Stop()
	var deadline time.Duration
	for {
		if d, err := readLease(path); err == nil {
			deadline = d
		}
		if deadline > 0 && LeaseNow() > deadline {
			close(lapsed)
			return
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
