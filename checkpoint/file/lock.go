package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rtrain/rtrain/checkpoint/storage"
)

var _ storage.Locker = (*Storage)(nil)

// lockTries bounds how often Lock starts over because the file it locked
// was removed by an Unlock in the meantime; each such race needs another
// holder to come and go in between.
const lockTries = 100

// Lock implements storage.Locker with flock(2) on the file at key, which
// holds the holder's description as JSON. The kernel lets go of the lock
// when the process that holds it dies, so a crashed holder never leaves a
// stale lock and ttl is not needed. Linux also takes flock on NFS, as a
// lock on the whole file.
func (s *Storage) Lock(ctx context.Context, key string, h storage.Holder, ttl time.Duration) (storage.Lock, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	for range lockTries {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("file: lock %s: %w", key, err)
		}
		if err := s.mkdirAll(filepath.Dir(p)); err != nil {
			return nil, fmt.Errorf("file: lock %s: %w", key, err)
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the directory went with an Unlock just now
		}
		if err != nil {
			return nil, fmt.Errorf("file: lock %s: %w", key, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			held, _ := readHolder(f)
			_ = f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, &storage.LockedError{URI: p, Holder: held}
			}
			return nil, fmt.Errorf("file: lock %s: %w", key, err)
		}
		// Unlock removes the file while it holds the lock, so the file
		// locked here may no longer be the one at p, which a third holder
		// can create and lock too: only the file at p counts.
		if same, err := isFileAt(f, p); err != nil || !same {
			_ = f.Close()
			if err != nil {
				return nil, fmt.Errorf("file: lock %s: %w", key, err)
			}
			continue
		}
		h.Since, h.Expires = time.Now(), time.Time{}
		data, err := json.Marshal(h)
		if err == nil {
			if err = f.Truncate(0); err == nil {
				_, err = f.WriteAt(append(data, '\n'), 0)
			}
		}
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("file: lock %s: %w", key, err)
		}
		return &fileLock{s: s, f: f, path: p}, nil
	}
	return nil, fmt.Errorf("file: lock %s: the lock file kept being replaced", key)
}

// readHolder reads the holder a lock file describes; zero when it is
// empty (its holder has not written it yet) or not ours.
func readHolder(f *os.File) (storage.Holder, error) {
	var h storage.Holder
	data, err := os.ReadFile(f.Name())
	if err != nil {
		return h, err
	}
	if strings.TrimSpace(string(data)) == "" {
		return h, nil
	}
	err = json.Unmarshal(data, &h)
	return h, err
}

// isFileAt reports whether the open file f is the file now at p.
func isFileAt(f *os.File, p string) (bool, error) {
	open, err := f.Stat()
	if err != nil {
		return false, err
	}
	now, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(open, now), nil
}

type fileLock struct {
	s    *Storage
	f    *os.File
	path string
}

// Renew implements storage.Lock. A flock needs no renewal; it checks that
// the lock file is still the one locked, since one removed by hand lets
// the next holder in.
func (l *fileLock) Renew(ctx context.Context) error {
	same, err := isFileAt(l.f, l.path)
	switch {
	case err != nil:
		return fmt.Errorf("file: renew lock %s: %w", l.path, err)
	case !same:
		return fmt.Errorf("file: lock %s was removed or replaced: %w", l.path, storage.ErrLockLost)
	}
	return nil
}

// Expires implements storage.Lock: never, while the process lives.
func (l *fileLock) Expires() time.Time { return time.Time{} }

// Unlock implements storage.Lock. The lock file goes, and its directory
// if that leaves it empty, so that a run that never stored anything
// leaves nothing behind.
func (l *fileLock) Unlock(ctx context.Context) error {
	if l.f == nil {
		return nil
	}
	var err error
	if same, serr := isFileAt(l.f, l.path); serr == nil && same {
		if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("file: unlock %s: %w", l.path, rerr)
		}
	}
	if cerr := l.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("file: unlock %s: %w", l.path, cerr)
	}
	l.f = nil
	for d := filepath.Dir(l.path); d != l.s.root && strings.HasPrefix(d, l.s.root+string(filepath.Separator)); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break // not empty: its parents are not either
		}
	}
	return err
}
