package pyshim

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The variables a worker gets are named once on each side and listed in
// PROTOCOL.md: env.go's constants, rtrain/_env.py's names and the table
// agree, and no other file spells one out.
func TestWorkerEnvIsNamedOnceOnEachSide(t *testing.T) {
	goNames := goEnvNames(t)
	if diff := cmp.Diff(goNames, pythonEnvNames(t)); diff != "" {
		t.Errorf("rtrain/_env.py (+) disagrees with env.go (-):\n%s", diff)
	}
	if diff := cmp.Diff(goNames, protocolEnvNames(t)); diff != "" {
		t.Errorf("PROTOCOL.md's table (+) disagrees with env.go (-):\n%s", diff)
	}

	// The Python package and its sitecustomize.
	quoted := regexp.MustCompile(`["']RTRAIN_\w*`)
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == "rtrain/_env.py" || path == "rtrain/_settings.py" {
			return err
		}
		b, err := files.ReadFile(path)
		if err != nil {
			return err
		}
		for _, lit := range quoted.FindAllString(string(b), -1) {
			t.Errorf("%s spells out %s: use rtrain/_env.py's name", path, lit)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// rtrain/_settings.py names rtrain's own variables the driver reads.
	settings, err := files.ReadFile("rtrain/_settings.py")
	if err != nil {
		t.Fatal(err)
	}
	protocol, err := os.ReadFile("PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^[A-Z_]+ = "(RTRAIN_\w+)"$`).FindAllStringSubmatch(string(settings), -1) {
		if !strings.Contains(string(protocol), "| `"+m[1]+"` |") {
			t.Errorf("rtrain/_settings.py names %s, which PROTOCOL.md's table of rtrain's own variables lacks", m[1])
		}
	}
	// rtrain's Go code outside its tests.
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && path != ".." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || path == filepath.Join("..", "pyshim", "env.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, name := range goNames {
			if strings.Contains(string(b), strconv.Quote(name)) {
				t.Errorf("%s spells out %q: use its constant in pyshim/env.go", path, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// goEnvNames are the values of env.go's constants, sorted.
func goEnvNames(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "env.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("env.go: %s is not a string literal", id.Name)
				}
				v, _ := strconv.Unquote(lit.Value)
				if !strings.HasPrefix(v, "RTRAIN_") || !strings.HasSuffix(id.Name, "Env") {
					t.Errorf("env.go: %s = %q, want XEnv = \"RTRAIN_...\"", id.Name, v)
				}
				names = append(names, v)
			}
		}
	}
	slices.Sort(names)
	return names
}

// pythonEnvNames are the values of rtrain/_env.py's names, sorted; each
// must be NAME = "RTRAIN_NAME".
func pythonEnvNames(t *testing.T) []string {
	t.Helper()
	b, err := files.ReadFile("rtrain/_env.py")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^([A-Z][A-Z0-9_]*) = "RTRAIN_([A-Z0-9_]+)"$`)
	var names []string
	for _, line := range regexp.MustCompile(`(?m)^\w+\s*=.*$`).FindAllString(string(b), -1) {
		m := want.FindStringSubmatch(line)
		if m == nil || m[1] != m[2] {
			t.Errorf("rtrain/_env.py: %s, want NAME = \"RTRAIN_NAME\"", line)
			continue
		}
		names = append(names, "RTRAIN_"+m[2])
	}
	slices.Sort(names)
	return names
}

// protocolEnvNames are the RTRAIN_ variables in PROTOCOL.md's table of
// what the agent sets, sorted.
func protocolEnvNames(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "\n## Environment the agent sets")
	if start < 0 {
		t.Fatal("PROTOCOL.md has no section on the environment the agent sets")
	}
	section := doc[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var names []string
	for _, row := range regexp.MustCompile("(?m)^\\| ([^|]+) \\|").FindAllStringSubmatch(section, -1) {
		for _, m := range regexp.MustCompile("`(RTRAIN_[A-Z0-9_]+)`").FindAllStringSubmatch(row[1], -1) {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return names
}
