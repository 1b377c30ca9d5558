// Package file is the checkpoint storage backend for a local (or network
// mounted) directory. An object is a plain file at root/key, so a user can
// browse checkpoints with ls. Writes go to a temporary name in the target
// directory, are fsynced and renamed into place, and the directory is
// fsynced, so an object is either whole and durable or absent.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rtrain/rtrain/checkpoint/storage"
)

// TempPrefix starts the name of a file being written. Such a file is an
// object like any other to List (so that deleting a directory's objects
// removes leftovers of a crash too), but it never becomes a key that a
// manifest names.
const TempPrefix = ".rtrain-tmp-"

// copyChunk bounds how much one copy step moves, so a cancelled context
// stops a large copy soon; each step still uses copy_file_range.
const copyChunk = 64 << 20

var _ storage.Storage = (*Storage)(nil)

// Storage keeps objects as files under a root directory.
type Storage struct {
	root string
}

// New returns a Storage rooted at dir, which is created if missing. dir
// must be absolute.
func New(dir string) (*Storage, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("file: storage directory %q is not absolute", dir)
	}
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("file: storage %s is a file, not a directory; pass a directory", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("file: create storage directory: %w", err)
	}
	return &Storage{root: dir}, nil
}

// Root is the storage directory.
func (s *Storage) Root() string { return s.root }

// URI implements storage.Storage.
func (s *Storage) URI(key string) string {
	if key == "" {
		return s.root
	}
	return filepath.Join(s.root, filepath.FromSlash(key))
}

func (s *Storage) path(key string) (string, error) {
	if err := storage.CheckKey(key); err != nil {
		return "", fmt.Errorf("file: %w", err)
	}
	return s.URI(key), nil
}

// PutFile implements storage.Storage.
func (s *Storage) PutFile(ctx context.Context, key, localPath string) error {
	dst, err := s.path(key)
	if err != nil {
		return err
	}
	src, err := os.Open(localPath)
	if err != nil {
		return fmt.Errorf("file: put %s: %w", key, err)
	}
	defer src.Close()
	if err := s.writeAtomic(ctx, dst, func(f *os.File) error { return copyFile(ctx, f, src) }); err != nil {
		return fmt.Errorf("file: put %s: %w", key, err)
	}
	return nil
}

// PutBytes implements storage.Storage.
func (s *Storage) PutBytes(ctx context.Context, key string, data []byte) error {
	dst, err := s.path(key)
	if err != nil {
		return err
	}
	err = s.writeAtomic(ctx, dst, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("file: put %s: %w", key, err)
	}
	return nil
}

// writeAtomic creates dst's directory, has fill write a temporary file next
// to dst, fsyncs it, renames it to dst and fsyncs the directory, so that
// after a crash dst is the old file, the new one or absent.
func (s *Storage) writeAtomic(ctx context.Context, dst string, fill func(*os.File) error) error {
	dir := filepath.Dir(dst)
	if err := s.mkdirAll(dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, TempPrefix+"*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	// CreateTemp makes 0600 files; objects should read like files the
	// user wrote.
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	done = true
	return syncDir(dir)
}

// mkdirAll creates dir and its missing parents under the root, fsyncing
// each new directory's parent so the new entries survive a crash: the
// manifest must not become durable while the directory holding its files
// is not.
func (s *Storage) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if dir == s.root || !strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		return os.MkdirAll(dir, 0o755)
	}
	parent := filepath.Dir(dir)
	if err := s.mkdirAll(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// copyFile copies src to dst in chunks, checking ctx between them.
func copyFile(ctx context.Context, dst *os.File, src *os.File) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.CopyN(dst, src, copyChunk)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if n < copyChunk {
			return nil
		}
	}
}

// GetFile implements storage.Storage.
func (s *Storage) GetFile(ctx context.Context, key, localPath string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	src, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("file: get %s: %w", key, notFound(err))
	}
	defer src.Close()
	if err := getInto(ctx, src, localPath); err != nil {
		return fmt.Errorf("file: get %s: %w", key, err)
	}
	return nil
}

// getInto copies src to a temporary file next to localPath and renames it
// into place. Unlike writeAtomic it does not fsync: a download can be
// repeated, a checkpoint cannot.
func getInto(ctx context.Context, src *os.File, localPath string) error {
	dir := filepath.Dir(localPath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, TempPrefix+"*")
	if err != nil {
		return err
	}
	if err := copyFile(ctx, tmp, src); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), localPath); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// GetBytes implements storage.Storage.
func (s *Storage) GetBytes(ctx context.Context, key string) ([]byte, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("file: get %s: %w", key, notFound(err))
	}
	return b, nil
}

// Stat implements storage.Storage.
func (s *Storage) Stat(ctx context.Context, key string) (storage.Object, error) {
	p, err := s.path(key)
	if err != nil {
		return storage.Object{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return storage.Object{}, fmt.Errorf("file: stat %s: %w", key, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return storage.Object{}, fmt.Errorf("file: stat %s: not a regular file: %w", key, storage.ErrNotFound)
	}
	return storage.Object{Key: key, Size: fi.Size()}, nil
}

// List implements storage.Storage. It walks only the directory that the
// prefix's last slash names, so listing one run does not read others.
func (s *Storage) List(ctx context.Context, prefix string) ([]storage.Object, error) {
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i]
	}
	start := s.root
	if base != "" {
		if err := storage.CheckKey(base); err != nil {
			return nil, fmt.Errorf("file: list %q: %w", prefix, err)
		}
		start = s.URI(base)
	}
	var objs []storage.Object
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone (or never there): nothing to list
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		objs = append(objs, storage.Object{Key: key, Size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("file: list %q: %w", prefix, err)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	return objs, nil
}

// Delete implements storage.Storage. Directories left empty are removed
// too, up to (not including) the root, as S3 has no directories to leave
// behind either.
func (s *Storage) Delete(ctx context.Context, keys ...string) error {
	dirs := map[string]bool{}
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, err := s.path(key)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("file: delete %s: %w", key, err)
		}
		dirs[filepath.Dir(p)] = true
	}
	// Make the removals durable before returning: Prune deletes a
	// manifest in one call and the files in the next, and a crash must
	// not bring back a manifest whose files are gone.
	for d := range dirs {
		if err := syncDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("file: delete: %w", err)
		}
	}
	// Deepest first, so a parent is tried after its children are gone.
	sorted := make([]string, 0, len(dirs))
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, d := range sorted {
		for d != s.root && strings.HasPrefix(d, s.root+string(filepath.Separator)) {
			if os.Remove(d) != nil {
				break // not empty (or already gone): its parents are not empty either
			}
			d = filepath.Dir(d)
		}
	}
	return nil
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (%w)", storage.ErrNotFound, err)
	}
	return err
}
