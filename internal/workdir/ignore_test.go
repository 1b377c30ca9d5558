package workdir

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIgnorePatterns(t *testing.T) {
	type check struct {
		path  string
		dir   bool
		want  bool // ignored
		label string
	}
	tests := []struct {
		name   string
		file   string
		checks []check
	}{
		{
			name: "defaults",
			checks: []check{
				{path: ".git", dir: true, want: true},
				{path: ".git", want: true, label: "a worktree's .git file"},
				{path: "sub/__pycache__", dir: true, want: true},
				{path: "__pycache__", want: false, label: "a file is not the directory"},
				{path: "a.pyc", want: true},
				{path: "pkg/deep/b.pyc", want: true},
				{path: "a.py", want: false},
				{path: ".rtrain-staging", dir: true, want: true},
				{path: "rtrain_results", dir: true, want: true},
				{path: "rtrain_results.txt", want: false},
				{path: ".rtrainignore", want: false},
			},
		},
		{
			name: "comments and blank lines",
			file: "# main.py\n\n   \n\\#hash\n",
			checks: []check{
				{path: "main.py", want: false},
				{path: "# main.py", want: false},
				{path: "#hash", want: true, label: "an escaped #"},
			},
		},
		{
			name: "star and question mark",
			file: "*.log\ndata?.bin\n",
			checks: []check{
				{path: "a.log", want: true},
				{path: "sub/dir/x.log", want: true},
				{path: "a.log.txt", want: false},
				{path: "data1.bin", want: true},
				{path: "deep/data2.bin", want: true},
				{path: "data10.bin", want: false},
				{path: "data.bin", want: false},
			},
		},
		{
			name: "double star",
			file: "a/**/z.txt\n**/cache\nlogs/**\n",
			checks: []check{
				{path: "a/z.txt", want: true},
				{path: "a/b/z.txt", want: true},
				{path: "a/b/c/z.txt", want: true},
				{path: "b/a/z.txt", want: false, label: "anchored at the root"},
				{path: "cache", dir: true, want: true},
				{path: "x/y/cache", want: true},
				{path: "logs", dir: true, want: false, label: "dir/** is what is inside, not dir"},
				{path: "logs/today", want: true},
				{path: "logs/a/b", want: true},
			},
		},
		{
			name: "trailing slash",
			file: "build/\n",
			checks: []check{
				{path: "build", dir: true, want: true},
				{path: "src/build", dir: true, want: true},
				{path: "build", want: false, label: "a file named build"},
			},
		},
		{
			name: "anchored",
			file: "/top.txt\ndocs/*.md\n",
			checks: []check{
				{path: "top.txt", want: true},
				{path: "sub/top.txt", want: false},
				{path: "docs/a.md", want: true},
				{path: "docs/sub/a.md", want: false, label: "* does not cross /"},
				{path: "x/docs/a.md", want: false},
			},
		},
		{
			name: "negation, last match wins",
			file: "*.txt\n!keep.txt\n!*.pyc\nlater.txt\n!later.txt\n",
			checks: []check{
				{path: "other.txt", want: true},
				{path: "keep.txt", want: false},
				{path: "sub/keep.txt", want: false},
				{path: "a.pyc", want: false, label: "a default taken back"},
				{path: "later.txt", want: false},
			},
		},
		{
			name: "escaped bang and trailing spaces",
			file: "\\!important\nspaced\\ \ntrailing   \n",
			checks: []check{
				{path: "!important", want: true},
				{path: "spaced ", want: true},
				{path: "spaced", want: false},
				{path: "trailing", want: true},
			},
		},
		{
			name: "windows line ends",
			file: "*.log\r\n",
			checks: []check{
				{path: "a.log", want: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newMatcher(DefaultIgnore, []byte(tt.file))
			require.NoError(t, err)
			for _, c := range tt.checks {
				assert.Equal(t, c.want, m.ignored(c.path, c.dir), "ignored(%q, dir=%v) %s", c.path, c.dir, c.label)
			}
		})
	}
}

func TestIgnoreBadPattern(t *testing.T) {
	_, err := newMatcher(".rtrainignore", []byte("ok\n[unclosed\n"))
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "workdir: .rtrainignore:2: bad pattern"), "error %q", err)
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0:                   "0 B",
		1023:                "1023 B",
		1024:                "1 KiB",
		1536:                "1.5 KiB",
		100 << 20:           "100 MiB",
		5<<30 + 300<<20:     "5.3 GiB",
		3 << 40:             "3 TiB",
		DefaultMaxBytes + 1: "100 MiB",
	} {
		assert.Equal(t, want, formatBytes(n), "formatBytes(%d)", n)
	}
}
