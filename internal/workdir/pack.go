package workdir

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// DefaultMaxBytes is the limit on a working directory's size when
// Options.MaxBytes is 0.
const DefaultMaxBytes = 100 << 20

// MaxEntries caps the directories, files and links of a working directory:
// each costs an inode, and a directory a block, on every node it unpacks
// on, whatever its size.
const MaxEntries = 100_000

// DefaultIgnore is the ignore file's name when Options.Ignore is "".
const DefaultIgnore = ".rtrainignore"

// ErrTooLarge is what a *TooLargeError matches with errors.Is.
var ErrTooLarge = errors.New("workdir: working directory over the size limit")

// epoch is every entry's time, so that the archive depends on content only.
var epoch = time.Unix(0, 0)

// Options are Pack's settings.
type Options struct {
	// MaxBytes caps the total size of the regular files packed, before
	// compression. 0 means DefaultMaxBytes (100 MiB); negative is an
	// error.
	MaxBytes int64
	// Ignore is the name of the ignore file, read from the directory's
	// root only (not from subdirectories). "" means DefaultIgnore
	// (.rtrainignore); a missing file means the default patterns only.
	Ignore string
	// Extra are files from outside the directory to pack too, each at the
	// top of the archive under its Name, in place of any entry the
	// directory has there. They count toward MaxBytes.
	Extra []ExtraFile
}

// ExtraFile is a file Options.Extra adds to an archive.
type ExtraFile struct {
	// Name is the entry's name in the archive: one path element.
	Name string
	// Path is the local file to pack.
	Path string
}

// Archive is a packed working directory.
type Archive struct {
	// Data is the gzip-compressed tar archive.
	Data []byte
	// Digest is the hex SHA-256 of the uncompressed tar stream.
	Digest string
	// Files counts the regular files and links in the archive.
	Files int
	// Entries counts its directories, regular files and links.
	Entries int
	// Size is the total size of the regular files, uncompressed.
	Size int64
	// Skipped lists what was left out for a reason other than an ignore
	// pattern: links leading outside the directory, sockets, devices,
	// pipes. Callers should log it.
	Skipped []Skipped
}

// Skipped is a path Pack left out, and why.
type Skipped struct {
	Path   string // slash-separated, relative to the directory
	Reason string
}

// TooLargeError is the error for a directory over the size limit, or over
// MaxEntries: Pack's, or a head's that accepts less than Pack did.
type TooLargeError struct {
	Dir     string  // the directory packed
	Size    int64   // the total size of its regular files, ignored ones excepted
	Limit   int64   // the limit it is over
	Largest []Entry // up to 3 of the largest files and directories, largest first
	Ignore  string  // the ignore file's name, for the advice
	// Entries, when not 0, is the count of its directories, files and
	// links, which is what is over MaxEntries (then Size and Limit are
	// not set).
	Entries int
	// Head is the address of the head whose limit it is over; "" when
	// the limit is this side's (Options.MaxBytes, --working-dir-limit).
	Head string
}

// Entry is a file or directory, with the total size of the regular files
// in it.
type Entry struct {
	Path string // slash-separated, relative to the directory
	Dir  bool
	Size int64
}

func (e *TooLargeError) Error() string {
	var largest []string
	for _, l := range e.Largest {
		name := l.Path
		if l.Dir {
			name += "/"
		}
		largest = append(largest, name+" "+formatBytes(l.Size))
	}
	if e.Entries > 0 {
		return fmt.Sprintf("workdir: %s holds %d files, directories and links, over the limit of %d; add what the job does not need to %s",
			e.Dir, e.Entries, MaxEntries, e.Ignore)
	}
	msg := fmt.Sprintf("workdir: %s is %s, over the %s limit", e.Dir, formatBytes(e.Size), formatBytes(e.Limit))
	if e.Head != "" {
		msg = fmt.Sprintf("workdir: %s is %s, over the %s the head at %s accepts", e.Dir, formatBytes(e.Size), formatBytes(e.Limit), e.Head)
	}
	if len(largest) > 0 {
		msg += " (largest: " + strings.Join(largest, ", ") + ")"
	}
	if e.Head != "" {
		return msg + "; add them to " + e.Ignore + ", or start the head with a larger --max-working-dir"
	}
	return msg + "; add them to " + e.Ignore + " or raise --working-dir-limit"
}

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// formatBytes is "512 B", "1.5 KiB", "100 MiB" or "2.3 GiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	s := fmt.Sprintf("%.1f", v)
	return strings.TrimSuffix(s, ".0") + " " + suffix
}

// item is one entry to pack.
type item struct {
	rel  string // slash-separated, relative to the root
	mode fs.FileMode
	size int64  // regular files only
	link string // links only: the target
	src  string // an Options.Extra file: the local file to pack
}

// Pack archives the directory dir, leaving out what its ignore file and the
// default patterns name (see the package documentation), and fails with a
// *TooLargeError, before reading any file, when what is left is over the
// limit or holds more than MaxEntries entries.
func Pack(ctx context.Context, dir string, opts Options) (*Archive, error) {
	limit := opts.MaxBytes
	switch {
	case limit == 0:
		limit = DefaultMaxBytes
	case limit < 0:
		return nil, fmt.Errorf("workdir: size limit %d is negative", limit)
	}
	ignoreName := opts.Ignore
	if ignoreName == "" {
		ignoreName = DefaultIgnore
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("workdir: %s is not a directory", root)
	}
	ignoreData, err := os.ReadFile(filepath.Join(root, ignoreName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	m, err := newMatcher(ignoreName, ignoreData)
	if err != nil {
		return nil, err
	}

	a := &Archive{}
	items, err := walk(ctx, root, m, a)
	if err != nil {
		return nil, err
	}
	if items, err = addExtra(items, opts.Extra); err != nil {
		return nil, err
	}
	for _, it := range items {
		a.Size += it.size
		if !it.mode.IsDir() {
			a.Files++
		}
	}
	a.Entries = len(items)
	if a.Entries > MaxEntries {
		return nil, &TooLargeError{Dir: root, Entries: a.Entries, Ignore: ignoreName}
	}
	if a.Size > limit {
		return nil, &TooLargeError{Dir: root, Size: a.Size, Limit: limit, Largest: largest(items, 3), Ignore: ignoreName}
	}

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, h))
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := writeItem(tw, root, it); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	a.Data = buf.Bytes()
	a.Digest = hex.EncodeToString(h.Sum(nil))
	return a, nil
}

// walk lists what to pack below root, in lexical order, and records in a
// what it leaves out for a reason.
func walk(ctx context.Context, root string, m *matcher, a *Archive) ([]item, error) {
	var items []item
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if m.ignored(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			items = append(items, item{rel: rel, mode: fs.ModeDir | mode.Perm()})
		case mode.IsRegular():
			items = append(items, item{rel: rel, mode: mode.Perm(), size: fi.Size()})
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := checkInside(root, rel); err != nil {
				a.Skipped = append(a.Skipped, Skipped{Path: rel, Reason: fmt.Sprintf("link to %s: %v", target, err)})
				return nil
			}
			items = append(items, item{rel: rel, mode: fs.ModeSymlink | 0o777, link: target})
		default:
			a.Skipped = append(a.Skipped, Skipped{Path: rel, Reason: "not a regular file, directory or link (" + mode.Type().String() + ")"})
		}
		return nil
	})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return nil, err
		}
		return nil, fmt.Errorf("workdir: %w", err)
	}
	return items, nil
}

// addExtra puts the extra files into items, each replacing what the
// directory had under its name.
func addExtra(items []item, extra []ExtraFile) ([]item, error) {
	for _, x := range extra {
		if x.Name == "" || x.Name != path.Base(x.Name) || x.Name == "." || x.Name == ".." {
			return nil, fmt.Errorf("workdir: extra file name %q is not one path element", x.Name)
		}
		fi, err := os.Stat(x.Path)
		if err != nil {
			return nil, fmt.Errorf("workdir: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("workdir: extra file %s is not a regular file", x.Path)
		}
		items = slices.DeleteFunc(items, func(it item) bool { return it.rel == x.Name || strings.HasPrefix(it.rel, x.Name+"/") })
		items = append(items, item{rel: x.Name, mode: 0o644, size: fi.Size(), src: x.Path})
	}
	return items, nil
}

// writeItem writes one entry. Everything but the name, type, permission
// bits, size and link target is fixed, so the stream is deterministic.
func writeItem(tw *tar.Writer, root string, it item) error {
	hdr := &tar.Header{Name: it.rel, Mode: int64(it.mode.Perm()), ModTime: epoch}
	switch {
	case it.mode.IsDir():
		hdr.Typeflag, hdr.Name = tar.TypeDir, it.rel+"/"
	case it.mode&fs.ModeSymlink != 0:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, it.link
	default:
		hdr.Typeflag, hdr.Size = tar.TypeReg, it.size
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("workdir: %s: %w", it.rel, err)
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	p := filepath.Join(root, filepath.FromSlash(it.rel))
	if it.src != "" {
		p = it.src
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("workdir: %w", err)
	}
	defer f.Close()
	n, err := io.CopyN(tw, f, it.size)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("workdir: %s: %w", it.rel, err)
	}
	if fi, statErr := f.Stat(); n != it.size || statErr != nil || fi.Size() != it.size {
		return fmt.Errorf("workdir: %s changed while being packed", p)
	}
	return nil
}

// largest picks up to n entries that say where the bytes are: the root's
// entries, largest first, where a directory is shown by its largest entry
// instead when that holds nearly all of it, and a directory among too few
// entries is shown by its contents.
func largest(items []item, n int) []Entry {
	sizes := map[string]int64{}
	children := map[string][]string{}
	isDir := map[string]bool{}
	for _, it := range items {
		isDir[it.rel] = it.mode.IsDir()
		parent := path.Dir(it.rel)
		if parent == "." {
			parent = ""
		}
		children[parent] = append(children[parent], it.rel)
		for p := it.rel; ; p = path.Dir(p) {
			sizes[p] += it.size
			if !strings.Contains(p, "/") {
				break
			}
		}
	}
	entry := func(rel string) Entry { return Entry{Path: rel, Dir: isDir[rel], Size: sizes[rel]} }
	var cands []Entry
	for _, c := range children[""] {
		cands = append(cands, entry(c))
	}
	for {
		sort.Slice(cands, func(i, j int) bool {
			if cands[i].Size != cands[j].Size {
				return cands[i].Size > cands[j].Size
			}
			return cands[i].Path < cands[j].Path
		})
		var nonEmpty []Entry
		for _, c := range cands {
			if c.Size > 0 {
				nonEmpty = append(nonEmpty, c)
			}
		}
		cands = nonEmpty
		expanded := false
		for i, c := range cands[:min(n, len(cands))] {
			if !c.Dir {
				continue
			}
			if dominant := dominantChild(c, children[c.Path], sizes); dominant != "" {
				cands[i] = entry(dominant)
				expanded = true
				break
			}
			if len(cands) < n {
				rest := append([]Entry(nil), cands[i+1:]...)
				cands = cands[:i]
				for _, k := range children[c.Path] {
					cands = append(cands, entry(k))
				}
				cands = append(cands, rest...)
				expanded = true
				break
			}
		}
		if !expanded {
			return cands[:min(n, len(cands))]
		}
	}
}

// dominantChild is the entry of dir that holds at least 90% of its size,
// or "".
func dominantChild(dir Entry, kids []string, sizes map[string]int64) string {
	for _, k := range kids {
		if sizes[k]*10 >= dir.Size*9 {
			return k
		}
	}
	return ""
}
