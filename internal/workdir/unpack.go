package workdir

import (
	"archive/tar"
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
	"sort"
	"strings"
	"syscall"
)

// ErrUnsafe is what Unpack's error matches, with errors.Is, for an entry
// that could write or point outside the destination, or that it does not
// unpack (hard links, devices, duplicates).
var ErrUnsafe = errors.New("workdir: unsafe archive")

// ErrDigestMismatch is Unpack's error when the archive is not the one
// its digest names.
var ErrDigestMismatch = errors.New("workdir: archive does not match its digest")

// ErrOverLimit is what an *OverLimitError matches with errors.Is.
var ErrOverLimit = errors.New("workdir: archive over its unpack limit")

// Limits bound what Unpack writes, so that a small archive (a gzip of
// zeros) cannot fill the disk. A sender that made the archive with Pack
// can tell the receiver its Archive.Size and Archive.Entries, to be held
// to exactly (one said to hold no bytes is held to the default).
type Limits struct {
	// Bytes caps the regular files' total size. 0 means DefaultMaxBytes
	// (100 MiB).
	Bytes int64
	// Entries caps the directories, regular files and links. 0 means
	// MaxEntries.
	Entries int
}

// OverLimitError is Unpack's error for an archive that holds more than
// its Limits allow.
type OverLimitError struct {
	// What is over: "files" (their bytes), "entries", or "stream" (the
	// bytes of the uncompressed tar stream, headers and padding included,
	// which files and entries within the limits stay under).
	What  string
	Limit int64
}

func (e *OverLimitError) Error() string {
	switch e.What {
	case "entries":
		return fmt.Sprintf("workdir: archive holds over %d entries, its limit", e.Limit)
	case "stream":
		return fmt.Sprintf("workdir: archive's tar stream runs over %s, its limit", formatBytes(e.Limit))
	}
	return fmt.Sprintf("workdir: archive unpacks to over %s of files, its limit", formatBytes(e.Limit))
}

// Is makes errors.Is(err, ErrOverLimit) true.
func (e *OverLimitError) Is(target error) bool { return target == ErrOverLimit }

func (l Limits) withDefaults() Limits {
	if l.Bytes == 0 {
		l.Bytes = DefaultMaxBytes
	}
	if l.Entries == 0 {
		l.Entries = MaxEntries
	}
	return l
}

// streamBytes bounds the uncompressed tar stream of an archive within l.
func (l Limits) streamBytes() int64 { return l.Bytes + int64(l.Entries+1)*entryOverhead }

// ArchiveBytes bounds the size of an archive, compressed, that unpacks
// within l: its tar stream, and gzip's overhead where it cannot compress
// (a stored block's header every 64 KiB, its own header and trailer).
func (l Limits) ArchiveBytes() int64 {
	s := l.withDefaults().streamBytes()
	return s + s/1024 + 4<<10
}

// entryOverhead bounds what one entry adds to the tar stream besides its
// file's bytes: its header, the records for a long name or link target
// (up to PATH_MAX each), and the padding of its data.
const entryOverhead = 16 << 10

// Unpack unpacks an archive made by Pack, read from r, into dst, which
// must be missing or empty; it creates dst. It keeps permission bits and
// links, and fails with an error matching ErrUnsafe on an entry that is
// absolute, climbs out with .., is not a directory, regular file or link,
// appears twice, or is a link resolving outside dst. It fails with an
// *OverLimitError, before writing past them, on an archive over lim. With
// a digest (Archive.Digest), it fails with ErrDigestMismatch when r is not
// that archive. After either of these dst is removed; on another error dst
// may hold part of the archive, but nothing was written outside dst and no
// link in it leads outside.
func Unpack(ctx context.Context, r io.Reader, digest, dst string, lim Limits) error {
	if digest != "" && !validDigest(digest) {
		return fmt.Errorf("workdir: digest %q is not a hex SHA-256", digest)
	}
	lim = lim.withDefaults()
	if lim.Bytes < 0 || lim.Entries < 0 {
		return fmt.Errorf("workdir: unpack limits %+v are negative", lim)
	}
	got, err := unpack(ctx, r, dst, lim)
	if err == nil && digest != "" && got != digest {
		err = fmt.Errorf("%w: want %s, got %s", ErrDigestMismatch, digest, got)
	}
	if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrOverLimit) {
		if rmErr := RemoveTree(dst); rmErr != nil {
			err = fmt.Errorf("%w (and: %w)", err, rmErr)
		}
	}
	return err
}

func validDigest(d string) bool {
	if len(d) != 2*sha256.Size {
		return false
	}
	for _, c := range d {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// RemoveTree removes dir even where an unpacked archive made a directory
// read-only.
func RemoveTree(dir string) error {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// unpack is Unpack that also returns the digest of the tar stream.
func unpack(ctx context.Context, r io.Reader, dst string, lim Limits) (string, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", fmt.Errorf("workdir: %w", err)
	}
	if entries, err := os.ReadDir(dst); err != nil {
		return "", fmt.Errorf("workdir: %w", err)
	} else if len(entries) > 0 {
		return "", fmt.Errorf("workdir: unpack into %s: not empty", dst)
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return "", fmt.Errorf("workdir: unpack: %w", err)
	}
	h := sha256.New()
	// The stream's bound stops what the limits on files and entries do not
	// see: data of entries that are skipped, and padding after the end.
	streamLimit := lim.streamBytes()
	stream := io.TeeReader(&boundedReader{r: gz, left: streamLimit, limit: streamLimit}, h)
	tr := tar.NewReader(stream)
	var files int64 // bytes of regular files so far
	entries := 0

	type dir struct {
		name string
		mode fs.FileMode
	}
	var links []link
	var dirs []dir
	seen := map[string]bool{}
	// Pass one: directories and files. No link exists in dst yet, so
	// nothing written here can be redirected out of it.
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", unpackError(err)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return "", err
		}
		if name == "." {
			continue
		}
		if seen[name] {
			return "", fmt.Errorf("%w: %q appears twice", ErrUnsafe, hdr.Name)
		}
		seen[name] = true
		if entries++; entries > lim.Entries {
			return "", &OverLimitError{What: "entries", Limit: int64(lim.Entries)}
		}
		p := filepath.Join(dst, filepath.FromSlash(name))
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return "", fmt.Errorf("workdir: unpack: %w", err)
			}
			dirs = append(dirs, dir{name, mode})
		case tar.TypeReg:
			if hdr.Size < 0 || hdr.Size > lim.Bytes-files {
				return "", &OverLimitError{What: "files", Limit: lim.Bytes}
			}
			files += hdr.Size
			if err := writeFile(p, tr, mode); err != nil {
				return "", err
			}
		case tar.TypeSymlink:
			if err := linkTarget(name, hdr.Linkname); err != nil {
				return "", err
			}
			links = append(links, link{name, hdr.Linkname})
		default:
			return "", fmt.Errorf("%w: %q is of type %q, not a directory, regular file or link", ErrUnsafe, hdr.Name, hdr.Typeflag)
		}
	}
	// The rest of the stream (the end blocks) is part of the digest, and
	// reading to the end makes gzip check its CRC.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return "", unpackError(err)
	}

	// Pass two: links, each where no link is on its way, then all of them
	// checked together, since a link may lead out only through another.
	for _, l := range links {
		if err := noLinkOnTheWay(dst, l.name); err != nil {
			removeLinks(dst, links)
			return "", err
		}
		p := filepath.Join(dst, filepath.FromSlash(l.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			removeLinks(dst, links)
			return "", fmt.Errorf("workdir: unpack: %w", err)
		}
		if err := os.Symlink(l.target, p); err != nil {
			removeLinks(dst, links)
			return "", fmt.Errorf("workdir: unpack: %w", err)
		}
	}
	for _, l := range links {
		if err := checkInside(dst, l.name); err != nil {
			removeLinks(dst, links)
			return "", fmt.Errorf("%w: link %s -> %s: %w", ErrUnsafe, l.name, l.target, err)
		}
	}

	// Directory modes last, deepest first, so that a read-only directory
	// was writable while it was filled.
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].name > dirs[j].name })
	for _, d := range dirs {
		if err := os.Chmod(filepath.Join(dst, filepath.FromSlash(d.name)), d.mode); err != nil {
			return "", fmt.Errorf("workdir: unpack: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// entryName cleans an entry's name, and rejects one that is absolute or
// climbs out with "..".
func entryName(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\x00") {
		return "", fmt.Errorf("%w: entry name %q", ErrUnsafe, name)
	}
	for _, s := range strings.Split(name, "/") {
		if s == ".." {
			return "", fmt.Errorf("%w: entry name %q climbs out with ..", ErrUnsafe, name)
		}
	}
	return path.Clean(name), nil
}

// linkTarget rejects, early, a link target that is absolute or lexically
// outside; the full check follows the links once all exist.
func linkTarget(name, target string) error {
	if target == "" || filepath.IsAbs(target) {
		return fmt.Errorf("%w: link %s -> %q", ErrUnsafe, name, target)
	}
	if err := lexicallyInside(strings.Split(path.Join(path.Dir(name), target), "/")); err != nil {
		return fmt.Errorf("%w: link %s -> %s: %w", ErrUnsafe, name, target, err)
	}
	return nil
}

// writeFile creates p, which must not exist, without following a link,
// with the contents of r and mode.
func writeFile(p string, r io.Reader, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("workdir: unpack: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("workdir: unpack: %w", err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Chmod(mode)
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return unpackError(err)
	}
	return nil
}

// unpackError wraps an error of reading or writing, keeping an
// *OverLimitError as it is.
func unpackError(err error) error {
	if errors.Is(err, ErrOverLimit) {
		return err
	}
	return fmt.Errorf("workdir: unpack: %w", err)
}

// boundedReader reads r, and fails with an *OverLimitError once more than
// limit bytes come out of it.
type boundedReader struct {
	r           io.Reader
	left, limit int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	// One byte past the limit tells a stream that ends at it from one
	// that goes on.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	if b.left -= int64(n); b.left < 0 {
		return 0, &OverLimitError{What: "stream", Limit: b.limit}
	}
	return n, err
}

// noLinkOnTheWay fails if a directory on the way to name (relative to
// dst) is a link: creating name there would follow it.
func noLinkOnTheWay(dst, name string) error {
	segs := strings.Split(name, "/")
	p := dst
	for _, s := range segs[:len(segs)-1] {
		p = filepath.Join(p, s)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("workdir: unpack: %w", err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%w: %s is below a link", ErrUnsafe, name)
		}
	}
	return nil
}

// link is a link entry, made after the files.
type link struct{ name, target string }

// removeLinks removes the links unpack made, so that none that leads
// outside stays behind.
func removeLinks(dst string, links []link) {
	for i := len(links) - 1; i >= 0; i-- {
		p := filepath.Join(dst, filepath.FromSlash(links[i].name))
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			_ = os.Remove(p)
		}
	}
}
