package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rtrain/rtrain/checkpoint/storage"
)

// parallelFiles is how many files Commit and Download move at once; the
// S3 backend moves up to 4 parts of each large file at once on top.
const parallelFiles = 8

// Run is one training run's checkpoints in a Storage. Its methods are
// safe for concurrent use, but only one process should Commit and Prune a
// given run at a time: Lock sees to that.
type Run struct {
	// Logger receives debug records (files moved, partial directories
	// removed, manifests skipped) and warnings about the run's lease. Nil
	// discards them. Set it before use.
	Logger *slog.Logger

	storage Storage
	name    string

	mu    sync.Mutex
	lease *lease // set by Lock
}

// NewRun returns the run named name in s. The name is one path element:
// not empty, no slashes, not "." or "..".
func NewRun(s Storage, name string) (*Run, error) {
	if name == "" || strings.Contains(name, "/") || storage.CheckKey(name) != nil {
		return nil, fmt.Errorf("checkpoint: run name %q: want one path element without slashes", name)
	}
	return &Run{storage: s, name: name}, nil
}

// Name is the run's name.
func (r *Run) Name() string { return r.name }

// URI is where the run's checkpoints are.
func (r *Run) URI() string { return r.storage.URI(r.name) }

func (r *Run) log() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// dirKey is the key prefix (without trailing slash) of checkpoint index.
func (r *Run) dirKey(index int) string { return joinKey(r.name, dirName(index)) }

func (r *Run) manifestKey(index int) string { return joinKey(r.dirKey(index), ManifestName) }

// localFile is a file of the directory being committed.
type localFile struct {
	rel string // slash-separated, relative to the directory
	abs string
}

// Commit uploads every file under dir as checkpoint index, checks that
// each stored object has the size that was hashed, and then writes the
// manifest, which makes the checkpoint exist. If anything fails, or ctx is
// cancelled, no manifest is written: the checkpoint does not exist and the
// files already stored are left for a later Commit of the same index, or
// Prune, to remove. An index that is already committed is refused with
// ErrExists, which is final: another writer got there first, and trying
// again cannot succeed. Leftovers of an uncommitted index are deleted
// first. A Run that took its lease (Lock) refuses to commit without it.
//
// Symbolic links to files are followed; other non-regular files and a
// top-level file named ManifestName are refused before anything is
// stored. A file that changes while it is uploaded is caught only if its
// size changes: the training script must be done writing dir.
func (r *Run) Commit(ctx context.Context, index int, dir string, metrics map[string]any, worldSize int) (Manifest, error) {
	fail := func(err error) (Manifest, error) {
		return Manifest{}, fmt.Errorf("checkpoint: commit %s: %w", r.storage.URI(r.dirKey(index)), err)
	}
	if index < 0 {
		return Manifest{}, fmt.Errorf("checkpoint: commit: negative index %d", index)
	}
	if worldSize < 0 {
		return Manifest{}, fmt.Errorf("checkpoint: commit: negative world size %d", worldSize)
	}
	if err := r.LockErr(); err != nil {
		return fail(err)
	}
	cleanMetrics, err := jsonMetrics(metrics)
	if err != nil {
		return fail(err)
	}
	files, err := walkLocal(dir)
	if err != nil {
		return fail(err)
	}

	// A manifest that does not parse commits nothing, so only a valid one
	// blocks the index.
	switch _, err := r.get(ctx, index); {
	case err == nil:
		return fail(fmt.Errorf("%w; take a new index from NextIndex", ErrExists))
	case !errors.Is(err, ErrNotFound):
		return fail(err)
	}
	// Whatever is there belongs to an attempt that never committed:
	// clearing it means no stale file sits next to the new ones, and no
	// stale file blocks a new path (a file "a" where "a/b" is to go).
	stale, err := r.storage.List(ctx, r.dirKey(index)+"/")
	if err != nil {
		return fail(err)
	}
	if len(stale) > 0 {
		r.log().Debug("removing partial checkpoint", "uri", r.storage.URI(r.dirKey(index)), "objects", len(stale))
		if err := r.storage.Delete(ctx, keys(stale)...); err != nil {
			return fail(err)
		}
	}

	start := time.Now()
	entries := make([]File, len(files))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelFiles)
	for i, f := range files {
		g.Go(func() error {
			e, err := r.putFile(gctx, index, f)
			entries[i] = e
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fail(err)
	}

	m := Manifest{
		Index:     index,
		Metrics:   cleanMetrics,
		Time:      time.Now().UTC().Truncate(time.Millisecond),
		WorldSize: worldSize,
		Files:     entries,
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fail(err)
	}
	// A cancel that came after the last file must still stop the commit:
	// the caller was told it would not happen.
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	// The manifest makes the checkpoint: a writer that lost the run while
	// its files went up must not make one.
	if err := r.LockErr(); err != nil {
		return fail(err)
	}
	if err := r.storage.PutBytes(ctx, r.manifestKey(index), data); err != nil {
		return fail(err)
	}
	m.URI = r.storage.URI(r.dirKey(index))
	r.log().Debug("committed checkpoint", "uri", m.URI, "files", len(m.Files), "bytes", m.Size(), "took", time.Since(start))
	return m, nil
}

// putFile hashes f, stores it and checks the stored size.
func (r *Run) putFile(ctx context.Context, index int, f localFile) (File, error) {
	sum, size, err := hashFile(ctx, f.abs)
	if err != nil {
		return File{}, err
	}
	key := joinKey(r.dirKey(index), f.rel)
	if err := r.storage.PutFile(ctx, key, f.abs); err != nil {
		return File{}, err
	}
	obj, err := r.storage.Stat(ctx, key)
	if err != nil {
		return File{}, err
	}
	if obj.Size != size {
		return File{}, fmt.Errorf("%s changed while it was stored: hashed %d bytes, stored %d", f.rel, size, obj.Size)
	}
	r.log().Debug("stored file", "key", key, "bytes", size)
	return File{Path: f.rel, Size: size, SHA256: sum}, nil
}

// walkLocal lists the files under dir, sorted by path.
func walkLocal(dir string) ([]localFile, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	var files []localFile
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == ManifestName {
			return fmt.Errorf("%s: a checkpoint may not contain a top-level file named %s, rtrain's manifest; rename it", p, ManifestName)
		}
		if err := storage.CheckKey(rel); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if !d.Type().IsRegular() {
			target, err := os.Stat(p) // follows a symbolic link
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if !target.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file (%s); a checkpoint holds files and directories only", p, target.Mode().Type())
			}
		}
		files = append(files, localFile{rel: rel, abs: p})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

// hashFile returns the hex SHA-256 and size of the file at p.
func hashFile(ctx context.Context, p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return "", 0, err
		}
		k, err := f.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", 0, fmt.Errorf("read %s: %w", p, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// dirState is what a listing shows of one checkpoint directory.
type dirState struct {
	index       int
	keys        []string
	hasManifest bool
}

// scan lists the run's checkpoint directories, committed or not, by index.
func (r *Run) scan(ctx context.Context) (map[int]*dirState, error) {
	objs, err := r.storage.List(ctx, r.name+"/")
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list %s: %w", r.URI(), err)
	}
	dirs := map[int]*dirState{}
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, r.name+"/")
		dir, name, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		index, ok := parseDirName(dir)
		if !ok {
			continue // not ours: leave it alone
		}
		d := dirs[index]
		if d == nil {
			d = &dirState{index: index}
			dirs[index] = d
		}
		d.keys = append(d.keys, o.Key)
		if name == ManifestName {
			d.hasManifest = true
		}
	}
	return dirs, nil
}

// readManifests fetches and checks the manifests of dirs that have one,
// skipping any that vanished or do not parse, and sorts them by index.
func (r *Run) readManifests(ctx context.Context, dirs map[int]*dirState) ([]Manifest, error) {
	var indices []int
	for i, d := range dirs {
		if d.hasManifest {
			indices = append(indices, i)
		}
	}
	found := make([]*Manifest, len(indices))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelFiles)
	for i, index := range indices {
		g.Go(func() error {
			m, err := r.get(gctx, index)
			switch {
			case errors.Is(err, ErrNotFound):
				r.log().Debug("skipping checkpoint", "index", index, "err", err)
				return nil
			case err != nil:
				return err
			}
			found[i] = m
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var ms []Manifest
	for _, m := range found {
		if m != nil {
			ms = append(ms, *m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Index < ms[j].Index })
	return ms, nil
}

// get reads the manifest of index. A missing or invalid manifest is
// ErrNotFound: either way the checkpoint does not exist.
func (r *Run) get(ctx context.Context, index int) (*Manifest, error) {
	uri := r.storage.URI(r.dirKey(index))
	data, err := r.storage.GetBytes(ctx, r.manifestKey(index))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", uri, err)
	}
	m, err := decodeManifest(data, index)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: invalid manifest, so no checkpoint (%w): %w", uri, err, ErrNotFound)
	}
	m.URI = uri
	return &m, nil
}

// List returns the run's committed checkpoints, ordered by index.
// Directories without a valid manifest are not checkpoints and are left
// out.
func (r *Run) List(ctx context.Context) ([]Manifest, error) {
	dirs, err := r.scan(ctx)
	if err != nil {
		return nil, err
	}
	return r.readManifests(ctx, dirs)
}

// Latest returns the committed checkpoint with the highest index, or nil
// (and no error) when there is none.
func (r *Run) Latest(ctx context.Context) (*Manifest, error) {
	ms, err := r.List(ctx)
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	return &ms[len(ms)-1], nil
}

// Get returns committed checkpoint index; an error wrapping ErrNotFound
// when it does not exist.
func (r *Run) Get(ctx context.Context, index int) (*Manifest, error) {
	if index < 0 {
		return nil, fmt.Errorf("checkpoint: negative index %d: %w", index, ErrNotFound)
	}
	return r.get(ctx, index)
}

// NextIndex returns the index a new checkpoint should take: one more than
// the highest index that has a directory, committed or partial (so a
// crashed attempt's leftovers are not mistaken for the next one's), or 1
// for a run without any.
func (r *Run) NextIndex(ctx context.Context) (int, error) {
	dirs, err := r.scan(ctx)
	if err != nil {
		return 0, err
	}
	next := 1
	for i := range dirs {
		next = max(next, i+1)
	}
	return next, nil
}

// Download writes every file of checkpoint m under dst (created if
// missing), keeping relative paths, and checks each file's size and
// SHA-256 against the manifest. A file that does not match is removed and
// the error, wrapping ErrCorrupt, names it. Files in dst that m does not
// list are left alone.
func (r *Run) Download(ctx context.Context, m Manifest, dst string) error {
	uri := r.storage.URI(r.dirKey(m.Index))
	if err := checkFiles(m.Files); err != nil {
		return fmt.Errorf("checkpoint: download %s: %w", uri, err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("checkpoint: download %s: %w", uri, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelFiles)
	for _, f := range m.Files {
		g.Go(func() error {
			if err := r.getFile(gctx, m.Index, f, dst); err != nil {
				return fmt.Errorf("checkpoint: download %s from %s: %w", f.Path, uri, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func (r *Run) getFile(ctx context.Context, index int, f File, dst string) error {
	target := filepath.Join(dst, filepath.FromSlash(f.Path))
	if err := r.storage.GetFile(ctx, joinKey(r.dirKey(index), f.Path), target); err != nil {
		return err
	}
	sum, size, err := hashFile(ctx, target)
	if err != nil {
		return err
	}
	if size != f.Size || sum != f.SHA256 {
		os.Remove(target)
		return fmt.Errorf("got %d bytes with sha256 %s, manifest says %d bytes with sha256 %s: %w", size, sum, f.Size, f.SHA256, ErrCorrupt)
	}
	r.log().Debug("downloaded file", "path", f.Path, "bytes", size)
	return nil
}

// Runs returns the names of the runs under the storage root that have at
// least one checkpoint directory, committed or not, sorted.
func Runs(ctx context.Context, s Storage) ([]string, error) {
	objs, err := s.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list %s: %w", s.URI(""), err)
	}
	seen := map[string]bool{}
	var names []string
	for _, o := range objs {
		parts := strings.SplitN(o.Key, "/", 3)
		if len(parts) < 3 || seen[parts[0]] {
			continue
		}
		if _, ok := parseDirName(parts[1]); ok {
			seen[parts[0]] = true
			names = append(names, parts[0])
		}
	}
	sort.Strings(names)
	return names, nil
}

func keys(objs []Object) []string {
	ks := make([]string, len(objs))
	for i, o := range objs {
		ks[i] = o.Key
	}
	return ks
}
