package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Area copies the checkpoint directories that workers attach to report()
// into a local staging area, one directory per report (by its Seq), so the
// worker can go on training, and delete its own copy, while the staged one
// uploads. It bounds how many reports are staged and not yet released, so
// a slow upload holds the next report() back instead of filling the disk.
//
// The files of all ranks of one report land in the same directory; two
// ranks that write the same relative path leave the one staged last, as in
// Ray Train.
type Area struct {
	dir string
	max int

	mu      sync.Mutex
	held    map[int]struct{}
	changed chan struct{} // closed and replaced when held shrinks
}

// New stages under dir (created if missing) with at most maxInFlight
// reports staged at once (at least 1). A Area owns dir: whatever is in it
// already was left by a process that ended without Close (a crash, a
// kill), is a checkpoint's worth of disk or more per report, and is
// removed. So each Area needs a directory of its own, which its callers
// give it: one per job, the job's next attempt after Close.
func New(dir string, maxInFlight int) (*Area, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("cluster: remove checkpoints left staged in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: checkpoint staging directory: %w", err)
	}
	return &Area{dir: dir, max: max(maxInFlight, 1), held: map[int]struct{}{}, changed: make(chan struct{})}, nil
}

// Dir is the staging directory of report seq.
func (s *Area) Dir(seq int) string { return filepath.Join(s.dir, "report_"+strconv.Itoa(seq)) }

// Stage copies every file under src into report seq's directory and
// returns that directory and the files' paths relative to it. It waits
// while maxInFlight other reports are staged, until one is released or ctx
// ends.
func (s *Area) Stage(ctx context.Context, seq int, src string) (string, []string, error) {
	if err := s.acquire(ctx, seq); err != nil {
		return "", nil, fmt.Errorf("cluster: stage checkpoint of report %d: %w", seq, err)
	}
	dst := s.Dir(seq)
	files, err := copyTree(ctx, src, dst)
	if err != nil {
		return "", nil, fmt.Errorf("cluster: stage checkpoint %s: %w", src, err)
	}
	return dst, files, nil
}

// Receive takes a place for report seq, as Stage does, for files that
// arrive from another node, and returns the directory to write them to.
func (s *Area) Receive(ctx context.Context, seq int) (string, error) {
	if err := s.acquire(ctx, seq); err != nil {
		return "", fmt.Errorf("cluster: receive checkpoint of report %d: %w", seq, err)
	}
	dst := s.Dir(seq)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", fmt.Errorf("cluster: receive checkpoint of report %d: %w", seq, err)
	}
	return dst, nil
}

func (s *Area) acquire(ctx context.Context, seq int) error {
	for {
		s.mu.Lock()
		_, ok := s.held[seq]
		if ok || len(s.held) < s.max {
			s.held[seq] = struct{}{}
			s.mu.Unlock()
			return nil
		}
		wait := s.changed
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Release deletes report seq's staged files and frees its place.
func (s *Area) Release(seq int) error {
	err := os.RemoveAll(s.Dir(seq))
	s.mu.Lock()
	if _, ok := s.held[seq]; ok {
		delete(s.held, seq)
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	return err
}

// Drain waits until every staged report has been released, or ctx ends.
func (s *Area) Drain(ctx context.Context) error {
	for {
		s.mu.Lock()
		n, wait := len(s.held), s.changed
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Close deletes everything staged.
func (s *Area) Close() error {
	s.mu.Lock()
	s.held = map[int]struct{}{}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return os.RemoveAll(s.dir)
}

// copyTree copies the regular files under src (symbolic links followed)
// into dst, keeping relative paths, several files at once: a sharded
// checkpoint's shards are copied side by side. Each file appears whole or
// not at all: it is written under a temporary name and renamed.
func copyTree(ctx context.Context, src, dst string) ([]string, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", src)
	}
	var files []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelCopies)
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := gctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := os.Stat(p) // follows links
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			if d.Type()&fs.ModeSymlink != 0 {
				return fmt.Errorf("%s: links to directories are not followed; copy the files instead", p)
			}
			return os.MkdirAll(target, 0o755)
		case fi.Mode().IsRegular():
			files = append(files, filepath.ToSlash(rel))
			g.Go(func() error { return copyFile(p, target) })
			return nil
		default:
			return fmt.Errorf("%s is not a regular file", p)
		}
	})
	if werr := g.Wait(); err == nil {
		err = werr
	}
	return files, err
}

// parallelCopies bounds the files one Stage copies at once.
const parallelCopies = 4

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".staging-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// io.Copy from one file to another uses copy_file_range: a reflink or
	// an in-kernel copy where the filesystem allows.
	if _, err = io.Copy(tmp, in); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	return nil
}

// ErrNoStorage is what a worker gets when it attaches a checkpoint to a
// group that was started without a Area.
var ErrNoStorage = errors.New("this job keeps no checkpoints (no staging area); report without checkpoint=")
