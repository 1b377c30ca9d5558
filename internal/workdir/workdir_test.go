package workdir_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/workdir"
)

// file is one entry of a test tree: a directory (trailing / in the path),
// a link (link set) or a regular file.
type file struct {
	path string
	data string
	mode fs.FileMode
	link string
}

// build makes the tree files under a new directory and returns it.
func build(t *testing.T, files ...file) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(f.path, "/")))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mode := f.mode
		switch {
		case f.link != "":
			require.NoError(t, os.Symlink(f.link, p))
			continue
		case strings.HasSuffix(f.path, "/"):
			if mode == 0 {
				mode = 0o755
			}
			require.NoError(t, os.MkdirAll(p, 0o755))
		default:
			if mode == 0 {
				mode = 0o644
			}
			require.NoError(t, os.WriteFile(p, []byte(f.data), 0o644))
		}
		require.NoError(t, os.Chmod(p, mode))
	}
	return root
}

// describe lists the tree under root: "path/ mode" for a directory,
// "path -> target" for a link, "path mode data" for a file.
func describe(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		require.NoError(t, err)
		switch {
		case fi.IsDir():
			out = append(out, fmt.Sprintf("%s/ %v", rel, fi.Mode().Perm()))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			require.NoError(t, err)
			out = append(out, rel+" -> "+target)
		case !fi.Mode().IsRegular():
			out = append(out, fmt.Sprintf("%s %v", rel, fi.Mode()))
		default:
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			out = append(out, fmt.Sprintf("%s %v %q", rel, fi.Mode().Perm(), data))
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// names lists the archive's entry names.
func names(t *testing.T, data []byte) []string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	var out []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, hdr.Name)
	}
}

func TestPackIgnores(t *testing.T) {
	const ignore = "*.log\n/data/\n!keep.log\nnotes/**\n!notes/keep.md\n"
	root := build(t,
		file{path: ".rtrainignore", data: ignore},
		file{path: ".git/config", data: "x"},
		file{path: "__pycache__/m.cpython.pyc", data: "x"},
		file{path: "pkg/__pycache__/n.pyc", data: "x"},
		file{path: "pkg/mod.py", data: "x"},
		file{path: "pkg/stale.pyc", data: "x"},
		file{path: ".rtrain-staging/f", data: "x"},
		file{path: "rtrain_results/run/ckpt", data: "x"},
		file{path: "train.py", data: "x"},
		file{path: "run.log", data: "x"},
		file{path: "keep.log", data: "x"},
		file{path: "data/big.bin", data: "x"},
		file{path: "pkg/data/small.bin", data: "x"},
		file{path: "notes/old.md", data: "x"},
		file{path: "notes/keep.md", data: "x"},
	)
	a, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)
	want := []string{
		".rtrainignore", "keep.log", "notes/", "notes/keep.md",
		"pkg/", "pkg/data/", "pkg/data/small.bin", "pkg/mod.py", "train.py",
	}
	if diff := cmp.Diff(want, names(t, a.Data)); diff != "" {
		t.Errorf("archive entries (-want +got):\n%s", diff)
	}
	assert.Equal(t, 6, a.Files, "files")
	assert.Equal(t, int64(len(ignore)+5), a.Size, "size: the ignore file and 5 one-byte files")
	assert.Empty(t, a.Skipped)
}

func TestPackIgnoreFileName(t *testing.T) {
	root := build(t,
		file{path: ".rtrainignore", data: "a\n"},
		file{path: "custom.ignore", data: "b\n"},
		file{path: "a", data: "x"},
		file{path: "b", data: "x"},
	)
	a, err := workdir.Pack(t.Context(), root, workdir.Options{Ignore: "custom.ignore"})
	require.NoError(t, err)
	assert.Equal(t, []string{".rtrainignore", "a", "custom.ignore"}, names(t, a.Data))
}

func TestPackTooLarge(t *testing.T) {
	big := strings.Repeat("x", 3000)
	tests := []struct {
		name    string
		files   []file
		opts    workdir.Options
		want    string // the message after "workdir: DIR "; "" for no error
		largest []workdir.Entry
	}{
		{
			name: "largest three, a dominated directory shown by its file",
			files: []file{
				{path: "data/big.bin", data: big},
				{path: "data/small", data: "0123456789"},
				{path: "model.pt", data: big[:1500]},
				{path: "src/a.py", data: big[:200]},
				{path: "src/b.py", data: big[:100]},
				{path: "notes", data: big[:50]},
			},
			opts: workdir.Options{MaxBytes: 1000},
			want: "is 4.7 KiB, over the 1000 B limit (largest: data/big.bin 2.9 KiB, model.pt 1.5 KiB, src/ 300 B); " +
				"add them to .rtrainignore or raise --working-dir-limit",
			largest: []workdir.Entry{
				{Path: "data/big.bin", Size: 3000},
				{Path: "model.pt", Size: 1500},
				{Path: "src", Dir: true, Size: 300},
			},
		},
		{
			name: "one directory is opened up",
			files: []file{
				{path: "src/a", data: big[:400]},
				{path: "src/b", data: big[:300]},
				{path: "src/c", data: big[:200]},
				{path: "src/d", data: big[:100]},
			},
			opts: workdir.Options{MaxBytes: 512, Ignore: "my.ignore"},
			want: "is 1000 B, over the 512 B limit (largest: src/a 400 B, src/b 300 B, src/c 200 B); " +
				"add them to my.ignore or raise --working-dir-limit",
		},
		{
			name: "ignored files do not count",
			files: []file{
				{path: ".rtrainignore", data: "data/\n"},
				{path: "data/big.bin", data: big},
				{path: "train.py", data: "print()"},
			},
			opts: workdir.Options{MaxBytes: 1000},
		},
		{
			name:  "the limit is inclusive",
			files: []file{{path: "a", data: big[:1000]}},
			opts:  workdir.Options{MaxBytes: 1000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := build(t, tt.files...)
			a, err := workdir.Pack(t.Context(), root, tt.opts)
			if tt.want == "" {
				require.NoError(t, err)
				require.NotNil(t, a)
				return
			}
			require.Error(t, err)
			assert.Equal(t, "workdir: "+root+" "+tt.want, err.Error())
			assert.NotContains(t, err.Error(), "\n")
			assert.True(t, errors.Is(err, workdir.ErrTooLarge), "errors.Is(err, ErrTooLarge)")
			var tl *workdir.TooLargeError
			require.ErrorAs(t, err, &tl)
			assert.Equal(t, tt.opts.MaxBytes, tl.Limit)
			if tt.largest != nil {
				assert.Equal(t, tt.largest, tl.Largest)
			}
		})
	}
}

func TestPackDefaultLimit(t *testing.T) {
	root := t.TempDir()
	f, err := os.Create(filepath.Join(root, "sparse"))
	require.NoError(t, err)
	require.NoError(t, f.Truncate(workdir.DefaultMaxBytes+1)) // sparse: no disk used
	require.NoError(t, f.Close())
	_, err = workdir.Pack(t.Context(), root, workdir.Options{})
	var tl *workdir.TooLargeError
	require.ErrorAs(t, err, &tl)
	assert.Equal(t, int64(workdir.DefaultMaxBytes), tl.Limit)

	_, err = workdir.Pack(t.Context(), root, workdir.Options{MaxBytes: -1})
	require.Error(t, err)
}

func TestRoundTrip(t *testing.T) {
	outside := t.TempDir()
	root := build(t,
		file{path: "train.py", data: "print('hi')\n"},
		file{path: "run.sh", data: "#!/bin/sh\n", mode: 0o755},
		file{path: "secret", data: "s", mode: 0o600},
		file{path: "empty/", mode: 0o755},
		file{path: "private/", mode: 0o700},
		file{path: "private/x", data: "x", mode: 0o400},
		file{path: "readonly/", mode: 0o555},
		file{path: "readonly/y", data: "y", mode: 0o444},
		file{path: "pkg/mod.py", data: "x = 1\n"},
		file{path: "pkg/sub/deep.txt", data: "deep"},
		file{path: "link-to-file", link: "train.py"},
		file{path: "pkg/sub/up", link: "../mod.py"},
		file{path: "link-to-dir", link: "pkg/sub"},
		file{path: "dangling", link: "not-there"},
		file{path: "abs", link: outside},
		file{path: "climbs", link: "../outside"},
		file{path: "pkg/escape", link: "sub/up/../../.."},
	)
	require.NoError(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))

	a, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)
	var skipped []string
	for _, s := range a.Skipped {
		skipped = append(skipped, s.Path)
		assert.NotEmpty(t, s.Reason, s.Path)
	}
	sort.Strings(skipped)
	assert.Equal(t, []string{"abs", "climbs", "fifo", "pkg/escape"}, skipped)
	assert.Equal(t, 11, a.Files, "files: 7 regular, 4 links")

	dst := filepath.Join(t.TempDir(), "job")
	require.NoError(t, workdir.Unpack(t.Context(), bytes.NewReader(a.Data), "", dst, workdir.Limits{}))
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(dst, "readonly"), 0o755) })

	var want []string
	for _, line := range describe(t, root) {
		name := strings.Fields(line)[0]
		if name != "abs" && name != "climbs" && name != "pkg/escape" && name != "fifo" {
			want = append(want, line)
		}
	}
	if diff := cmp.Diff(want, describe(t, dst)); diff != "" {
		t.Errorf("unpacked tree (-want +got):\n%s", diff)
	}
	data, err := os.ReadFile(filepath.Join(dst, "link-to-dir", "deep.txt"))
	require.NoError(t, err)
	assert.Equal(t, "deep", string(data), "through a link to a directory")
}

func TestDeterministic(t *testing.T) {
	root := build(t,
		file{path: "a.py", data: "a"},
		file{path: "b/c.py", data: "c", mode: 0o755},
		file{path: "l", link: "a.py"},
	)
	first, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)
	require.Len(t, first.Digest, 64)
	sum := sha256.Sum256(first.Data)
	assert.NotEqual(t, hex.EncodeToString(sum[:]), first.Digest, "the digest is of the tar, not of the gzip stream")

	again, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)
	assert.Equal(t, first.Digest, again.Digest, "same tree, same digest")
	assert.Equal(t, first.Data, again.Data, "same tree, same bytes")

	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	require.NoError(t, os.Chtimes(filepath.Join(root, "a.py"), old, old))
	require.NoError(t, os.Chtimes(filepath.Join(root, "b"), old, old))
	touched, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)
	assert.Equal(t, first.Digest, touched.Digest, "times do not count")

	require.NoError(t, os.Chmod(filepath.Join(root, "a.py"), 0o600))
	chmodded, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)
	assert.NotEqual(t, first.Digest, chmodded.Digest, "modes count")

	require.NoError(t, os.WriteFile(filepath.Join(root, "b", "c.py"), []byte("C"), 0o755))
	changed, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)
	assert.NotEqual(t, chmodded.Digest, changed.Digest, "content counts")
}

func TestPackCanceled(t *testing.T) {
	root := build(t, file{path: "a", data: "a"})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := workdir.Pack(ctx, root, workdir.Options{})
	assert.ErrorIs(t, err, context.Canceled)
}

// entry is one entry of a crafted archive.
type entry struct {
	name string
	typ  byte
	data string
	link string
	mode int64
}

func TestPackRefusesTooManyEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 100,001 files")
	}
	root := t.TempDir()
	for i := range workdir.MaxEntries + 1 {
		f, err := os.Create(filepath.Join(root, strconv.Itoa(i)))
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	_, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.ErrorIs(t, err, workdir.ErrTooLarge)
	assert.Equal(t, "workdir: "+root+" holds 100001 files, directories and links, over the limit of 100000; add what the job does not need to .rtrainignore", err.Error())
}

// A receiver refuses an archive larger than its figures allow: Pack's
// stays within, even of random bytes, in many files with long names.
func TestArchiveBytesBoundsPacksArchive(t *testing.T) {
	root := t.TempDir()
	random := make([]byte, 1<<20)
	_, _ = rand.Read(random)
	require.NoError(t, os.WriteFile(filepath.Join(root, "big"), random, 0o644))
	long := filepath.Join(root, strings.Repeat("d", 200), strings.Repeat("e", 200))
	require.NoError(t, os.MkdirAll(long, 0o755))
	for i := range 500 {
		name := filepath.Join(long, fmt.Sprintf("%s-%d", strings.Repeat("f", 200), i))
		require.NoError(t, os.WriteFile(name, random[i:i+100], 0o644))
	}
	a, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)
	bound := workdir.Limits{Bytes: a.Size, Entries: a.Entries}.ArchiveBytes()
	assert.LessOrEqual(t, int64(len(a.Data)), bound)
	require.NoError(t, workdir.Unpack(t.Context(), bytes.NewReader(a.Data), a.Digest, filepath.Join(t.TempDir(), "d"),
		workdir.Limits{Bytes: a.Size, Entries: a.Entries}))
}

func TestPackExtra(t *testing.T) {
	root := build(t,
		file{path: "train.py", data: "print('hi')\n"},
		file{path: ".fn.pkl/", mode: 0o755},
		file{path: ".fn.pkl/old", data: "stale"},
	)
	payload := filepath.Join(t.TempDir(), "payload")
	require.NoError(t, os.WriteFile(payload, []byte("pickled"), 0o600))

	a, err := workdir.Pack(t.Context(), root, workdir.Options{Extra: []workdir.ExtraFile{{Name: ".fn.pkl", Path: payload}}})
	require.NoError(t, err)
	dst := filepath.Join(t.TempDir(), "job")
	require.NoError(t, workdir.Unpack(t.Context(), bytes.NewReader(a.Data), a.Digest, dst, workdir.Limits{}))
	assert.Equal(t, []string{`.fn.pkl -rw-r--r-- "pickled"`, `train.py -rw-r--r-- "print('hi')\n"`}, describe(t, dst), "the extra file replaces what the directory had under its name")

	_, err = workdir.Pack(t.Context(), root, workdir.Options{MaxBytes: 12, Extra: []workdir.ExtraFile{{Name: "x", Path: payload}}})
	assert.ErrorIs(t, err, workdir.ErrTooLarge, "extra files count toward the limit")
	for _, name := range []string{"", "a/b", "..", "."} {
		_, err = workdir.Pack(t.Context(), root, workdir.Options{Extra: []workdir.ExtraFile{{Name: name, Path: payload}}})
		assert.Error(t, err, name)
	}
}
