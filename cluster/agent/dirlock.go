package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrDataDirInUse is wrapped by Start's error when another agent
// holds its data directory: two agents on one directory would remove each
// other's working directories and staged checkpoints.
var ErrDataDirInUse = errors.New("cluster: another agent uses this data directory")

// dirLock is an exclusive lock on a directory, held while its file is
// open; the kernel lets go of it when the process dies, so a crashed agent
// never leaves a stale lock.
type dirLock struct{ f *os.File }

// lockDir creates dir if needed and locks it, or says which process holds
// it.
func lockDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: data directory: %w", err)
	}
	path := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: data directory lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (%s); give each agent its own --data-dir", ErrDataDirInUse, dir, holder)
		}
		return nil, fmt.Errorf("cluster: lock data directory %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// unlock lets go of the lock.
func (l *dirLock) unlock() { _ = l.f.Close() }
