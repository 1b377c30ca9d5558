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

// Unpack unpacks an archive made by Pack into dst, which must be missing or
// empty; it creates dst. It keeps permission bits and links, and fails with
// an error matching ErrUnsafe on an entry that is absolute, climbs out with
// .., is not a directory, regular file or link, appears twice, or is a link
// resolving outside dst. With a digest (Archive.Digest), it fails with
// ErrDigestMismatch and removes dst when data is not that archive. On
// another error dst may hold part of the archive, but nothing was written
// outside dst and no link in it leads outside.
func Unpack(ctx context.Context, data []byte, digest, dst string) error {
	if digest != "" && !validDigest(digest) {
		return fmt.Errorf("workdir: digest %q is not a hex SHA-256", digest)
	}
	got, err := unpack(ctx, data, dst)
	if err == nil && digest != "" && got != digest {
		err = fmt.Errorf("%w: want %s, got %s", ErrDigestMismatch, digest, got)
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
func unpack(ctx context.Context, data []byte, dst string) (string, error) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", fmt.Errorf("workdir: %w", err)
	}
	if entries, err := os.ReadDir(dst); err != nil {
		return "", fmt.Errorf("workdir: %w", err)
	} else if len(entries) > 0 {
		return "", fmt.Errorf("workdir: unpack into %s: not empty", dst)
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return "", fmt.Errorf("workdir: unpack: %w", err)
	}
	h := sha256.New()
	stream := io.TeeReader(gz, h)
	tr := tar.NewReader(stream)

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
			return "", fmt.Errorf("workdir: unpack: %w", err)
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
		p := filepath.Join(dst, filepath.FromSlash(name))
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return "", fmt.Errorf("workdir: unpack: %w", err)
			}
			dirs = append(dirs, dir{name, mode})
		case tar.TypeReg:
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
		return "", fmt.Errorf("workdir: unpack: %w", err)
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
		return fmt.Errorf("workdir: unpack: %w", err)
	}
	return nil
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
