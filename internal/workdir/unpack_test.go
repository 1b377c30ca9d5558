package workdir_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/workdir"
)

// craft makes a gzip'ed tar of entries, as an attacker could.
func craft(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: mode, Linkname: e.link, Size: int64(len(e.data)), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		require.NoError(t, tw.WriteHeader(hdr))
		if e.typ == tar.TypeReg {
			_, err := io.WriteString(tw, e.data)
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

func TestUnpackRejects(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		unsafe  bool // the error matches ErrUnsafe
	}{
		{name: "parent", entries: []entry{{name: "../evil", typ: tar.TypeReg, data: "x"}}, unsafe: true},
		{name: "parent inside", entries: []entry{{name: "a/../../evil", typ: tar.TypeReg, data: "x"}}, unsafe: true},
		{name: "absolute", entries: []entry{{name: "/tmp/evil", typ: tar.TypeReg, data: "x"}}, unsafe: true},
		{name: "absolute directory", entries: []entry{{name: "/evil/", typ: tar.TypeDir}}, unsafe: true},
		{name: "link absolute", entries: []entry{{name: "l", typ: tar.TypeSymlink, link: "/etc"}}, unsafe: true},
		{name: "link climbing", entries: []entry{{name: "a/l", typ: tar.TypeSymlink, link: "../../x"}}, unsafe: true},
		{
			name: "link climbing through a link",
			entries: []entry{
				{name: "sub/", typ: tar.TypeDir},
				{name: "sub/up", typ: tar.TypeSymlink, link: ".."},
				{name: "esc", typ: tar.TypeSymlink, link: "sub/up/.."},
			},
			unsafe: true,
		},
		{
			name: "link climbing through a later link",
			entries: []entry{
				{name: "a", typ: tar.TypeSymlink, link: "b/.."},
				{name: "b", typ: tar.TypeSymlink, link: "."},
			},
			unsafe: true,
		},
		{
			name: "link created through a link",
			entries: []entry{
				{name: "sub/", typ: tar.TypeDir},
				{name: "a", typ: tar.TypeSymlink, link: "sub"},
				{name: "a/b", typ: tar.TypeSymlink, link: "x"},
			},
			unsafe: true,
		},
		{
			name: "file written through a link",
			entries: []entry{
				{name: "l", typ: tar.TypeSymlink, link: "sub"},
				{name: "l/evil", typ: tar.TypeReg, data: "x"},
			},
		},
		{name: "hard link", entries: []entry{{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}}, unsafe: true},
		{name: "device", entries: []entry{{name: "d", typ: tar.TypeChar}}, unsafe: true},
		{
			name: "duplicate",
			entries: []entry{
				{name: "a", typ: tar.TypeReg, data: "1"},
				{name: "a", typ: tar.TypeReg, data: "2"},
			},
			unsafe: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "sub", "dst")
			err := workdir.Unpack(t.Context(), bytes.NewReader(craft(t, tt.entries...)), "", dst, workdir.Limits{})
			require.Error(t, err)
			t.Log(err)
			if tt.unsafe {
				assert.ErrorIs(t, err, workdir.ErrUnsafe)
			}
			// Nothing outside dst, and no link in dst leading out.
			entries, err := os.ReadDir(filepath.Join(parent, "sub"))
			require.NoError(t, err)
			require.Len(t, entries, 1, "entries next to dst")
			top, err := os.ReadDir(parent)
			require.NoError(t, err)
			require.Len(t, top, 1, "entries in dst's grandparent")
			_ = filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type()&fs.ModeSymlink != 0 {
					target, _ := os.Readlink(p)
					resolved, err := filepath.EvalSymlinks(p)
					if err == nil {
						assert.True(t, strings.HasPrefix(resolved, dst), "link %s -> %s resolves to %s", p, target, resolved)
					}
				}
				return nil
			})
		})
	}
}

func TestUnpackRefuses(t *testing.T) {
	good := craft(t, entry{name: "a", typ: tar.TypeReg, data: "a"})

	dst := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dst, "x"), nil, 0o644))
	assert.Error(t, workdir.Unpack(t.Context(), bytes.NewReader(good), "", dst, workdir.Limits{}), "a destination that is not empty")

	assert.Error(t, workdir.Unpack(t.Context(), bytes.NewReader([]byte("not gzip")), "", filepath.Join(t.TempDir(), "d"), workdir.Limits{}))
	assert.Error(t, workdir.Unpack(t.Context(), bytes.NewReader(good[:len(good)-8]), "", filepath.Join(t.TempDir(), "d"), workdir.Limits{}), "a truncated archive")
}

func TestUnpackChecksDigest(t *testing.T) {
	root := build(t, file{path: "a", data: "a"})
	a, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)

	ok := filepath.Join(t.TempDir(), "ok")
	require.NoError(t, workdir.Unpack(t.Context(), bytes.NewReader(a.Data), a.Digest, ok, workdir.Limits{}))

	dst := filepath.Join(t.TempDir(), "d")
	err = workdir.Unpack(t.Context(), bytes.NewReader(a.Data), strings.Repeat("0", 64), dst, workdir.Limits{})
	assert.ErrorIs(t, err, workdir.ErrDigestMismatch)
	_, err = os.Stat(dst)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing left after a mismatch")

	for _, bad := range []string{"../x", strings.Repeat("A", 64), a.Digest[:63]} {
		assert.Error(t, workdir.Unpack(t.Context(), bytes.NewReader(a.Data), bad, filepath.Join(t.TempDir(), "d"), workdir.Limits{}), "digest %q", bad)
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// bomb is a gzip'ed tar as an attacker could make it small: entries, then
// the file name zeros with size zero bytes, then trailing zero bytes after
// the tar stream's end.
func bomb(t *testing.T, entries []entry, size, trailing int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	require.NoError(t, err)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644}))
	}
	if size > 0 {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: size}))
		_, err = io.CopyN(tw, zeros{}, size)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	_, err = io.CopyN(gz, zeros{}, trailing)
	require.NoError(t, err)
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

// A small archive cannot fill the disk: a 200 KB gzip of zeros used to
// unpack to all of its 200 MiB, and any over 100 MiB to more than Pack
// ships.
func TestUnpackBoundsWhatItWrites(t *testing.T) {
	many := make([]entry, 5)
	for i := range many {
		many[i] = entry{name: fmt.Sprintf("f%d", i), typ: tar.TypeReg}
	}
	tests := []struct {
		name           string
		entries        []entry
		size, trailing int64
		lim            workdir.Limits
		what           string // the OverLimitError's What
		limit          int64
	}{
		{name: "gzip of zeros, default limit", size: workdir.DefaultMaxBytes + 1, what: "files", limit: workdir.DefaultMaxBytes},
		{name: "over the bytes it was said to hold", size: 1 << 20, lim: workdir.Limits{Bytes: 1<<20 - 1}, what: "files", limit: 1<<20 - 1},
		{name: "over the entries it was said to hold", entries: many, lim: workdir.Limits{Entries: 4}, what: "entries", limit: 4},
		{name: "zeros after the end", size: 10, trailing: 1 << 20, lim: workdir.Limits{Bytes: 10, Entries: 1},
			what: "stream", limit: 10 + 2*16<<10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := bomb(t, tt.entries, tt.size, tt.trailing)
			require.Less(t, len(data), 1<<20, "the archive is small")
			dst := filepath.Join(t.TempDir(), "d")
			err := workdir.Unpack(t.Context(), bytes.NewReader(data), "", dst, tt.lim)
			var over *workdir.OverLimitError
			require.ErrorAs(t, err, &over, "a %d-byte archive unpacked", len(data))
			assert.ErrorIs(t, err, workdir.ErrOverLimit)
			assert.Equal(t, tt.what, over.What)
			assert.Equal(t, tt.limit, over.Limit)
			t.Log(err)
			_, err = os.Stat(dst)
			assert.ErrorIs(t, err, os.ErrNotExist, "nothing left of it")
		})
	}
}

// Pack's archive unpacks within the limits its Size and Entries make.
func TestUnpackWithinPacksOwnLimits(t *testing.T) {
	root := build(t,
		file{path: "train.py", data: "print('hi')\n"},
		file{path: "data/a", data: strings.Repeat("a", 5000)},
		file{path: "data/b/", mode: 0o755},
		file{path: "link", link: "train.py"},
		file{path: "empty", data: ""},
	)
	a, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)
	assert.Equal(t, 6, a.Entries, "entries: 2 directories, 3 files, 1 link")
	exact := workdir.Limits{Bytes: a.Size, Entries: a.Entries}
	require.NoError(t, workdir.Unpack(t.Context(), bytes.NewReader(a.Data), a.Digest, filepath.Join(t.TempDir(), "d"), exact))

	for _, lim := range []workdir.Limits{{Bytes: a.Size - 1, Entries: a.Entries}, {Bytes: a.Size, Entries: a.Entries - 1}} {
		err := workdir.Unpack(t.Context(), bytes.NewReader(a.Data), a.Digest, filepath.Join(t.TempDir(), "d"), lim)
		assert.ErrorIs(t, err, workdir.ErrOverLimit, "limits %+v", lim)
	}
}
