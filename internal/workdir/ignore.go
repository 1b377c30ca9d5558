package workdir

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"
)

// defaultIgnore is applied before the ignore file's patterns. .git has no
// trailing slash: in a worktree or submodule it is a file.
var defaultIgnore = []string{
	".git",
	"__pycache__/",
	"*.pyc",
	".rtrain-staging",
	"rtrain_results/",
}

// rule is one parsed ignore pattern.
type rule struct {
	neg     bool     // a "!" pattern: takes a path back
	dirOnly bool     // a trailing "/": matches directories only
	segs    []string // path.Match patterns per path segment, or "**"
}

// matcher decides which paths an ignore file leaves out.
type matcher struct {
	rules []rule
}

// newMatcher parses the default patterns, then the ignore file's (data,
// named file in errors).
func newMatcher(file string, data []byte) (*matcher, error) {
	m := &matcher{}
	for _, p := range defaultIgnore {
		r, ok, err := parseRule(p)
		if err != nil || !ok {
			panic("workdir: bad default ignore pattern " + p)
		}
		m.rules = append(m.rules, r)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		r, ok, err := parseRule(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("workdir: %s:%d: %w", file, n, err)
		}
		if ok {
			m.rules = append(m.rules, r)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("workdir: %s: %w", file, err)
	}
	return m, nil
}

// parseRule parses one line of an ignore file; ok is false for a blank
// line or a comment.
func parseRule(line string) (r rule, ok bool, err error) {
	line = strings.TrimSuffix(line, "\r")
	// Trailing spaces are dropped unless escaped with a backslash.
	trimmed := strings.TrimRight(line, " \t")
	if strings.HasSuffix(trimmed, `\`) && len(trimmed) < len(line) {
		trimmed += line[len(trimmed) : len(trimmed)+1]
	}
	line = trimmed
	if line == "" || strings.HasPrefix(line, "#") {
		return rule{}, false, nil
	}
	if strings.HasPrefix(line, "!") {
		r.neg = true
		line = line[1:]
	} else if strings.HasPrefix(line, `\!`) || strings.HasPrefix(line, `\#`) {
		line = line[1:]
	}
	if strings.HasSuffix(line, "/") {
		r.dirOnly = true
		line = strings.TrimRight(line, "/")
	}
	if line == "" {
		return rule{}, false, fmt.Errorf("empty pattern")
	}
	// A slash at the start or in the middle anchors the pattern to the
	// root; without one it matches a name at any depth.
	anchored := strings.Contains(line, "/")
	line = strings.TrimPrefix(line, "/")
	for _, s := range strings.Split(line, "/") {
		if s == "" {
			continue
		}
		if strings.Contains(s, "**") && s != "**" {
			// As in git, ** inside a segment is just two stars.
			s = strings.ReplaceAll(s, "**", "*")
		}
		if _, err := path.Match(s, ""); err != nil {
			return rule{}, false, fmt.Errorf("bad pattern %q: %w", line, err)
		}
		r.segs = append(r.segs, s)
	}
	if !anchored {
		r.segs = append([]string{"**"}, r.segs...)
	}
	return r, true, nil
}

// ignored reports whether rel, a slash-separated path relative to the
// root, is left out. The caller does not descend into an ignored
// directory, which is why nothing inside one can be taken back.
func (m *matcher) ignored(rel string, isDir bool) bool {
	segs := strings.Split(rel, "/")
	ignored := false
	for _, r := range m.rules {
		if r.dirOnly && !isDir {
			continue
		}
		if matchSegs(r.segs, segs) {
			ignored = !r.neg
		}
	}
	return ignored
}

// matchSegs matches path segments against pattern segments, where "**"
// stands for any number of segments; a trailing "**" for at least one, so
// that "dir/**" matches what is inside dir but not dir itself, as in git.
func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			if len(rest) == 0 {
				return len(name) > 0
			}
			for i := 0; i <= len(name); i++ {
				if matchSegs(rest, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
