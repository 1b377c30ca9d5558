package pyshim

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rtrain/rtrain/internal/pyenv"
)

// The PEP 440 versions build-wheel.py makes of git describe strings, by
// scripts/test_build_wheel.py.
func TestBuildWheelVersions(t *testing.T) {
	if _, err := os.Stat(pyenv.Python); err != nil {
		t.Skipf("skipping: no %s", pyenv.Python)
	}
	out, err := exec.Command(pyenv.Python, "../scripts/test_build_wheel.py", "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/test_build_wheel.py: %v\n%s", err, out)
	}
}

// pyOut runs the venv's python with args in a temporary directory (not the
// repository, whose pyshim/ must not be what it imports), extra added to
// its environment.
func pyOut(t *testing.T, e *pyenv.Env, extra []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(e.Python, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(e.Env(), extra...)
	var o, s bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &s
	err = cmd.Run()
	return o.String(), s.String(), err
}

// installed is where pip put the package in the venv.
type installed struct {
	File          string `json:"file"`
	Platlib       string `json:"platlib"`
	Version       string `json:"version"`
	BinaryVersion string `json:"binary_version"`
}

func installedPackage(t *testing.T, e *pyenv.Env) installed {
	t.Helper()
	out, stderr, err := pyOut(t, e, nil, "-c", `
import json, sysconfig
import rtrain, rtrain._version as v
print(json.dumps({"file": rtrain.__file__, "platlib": sysconfig.get_paths()["platlib"],
                  "version": v.__version__, "binary_version": v.binary_version}))
`)
	if err != nil {
		t.Fatalf("import rtrain in the venv: %v\n%s", err, stderr)
	}
	var got installed
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	return got
}

func TestWheelInstallsIntoAVenv(t *testing.T) {
	e := pyenv.Venv(t)
	t.Logf("binary, wheel and venv built in %v", e.Took)
	got := installedPackage(t, e)

	pkg := filepath.Join(got.Platlib, "rtrain")
	if got.File != filepath.Join(pkg, "__init__.py") {
		t.Errorf("rtrain.__file__ = %s, want it in the venv's site-packages, %s", got.File, pkg)
	}
	if !strings.HasPrefix(got.Platlib, filepath.Dir(e.Bin)+string(filepath.Separator)) {
		t.Errorf("site-packages = %s, want it inside the venv %s", got.Platlib, filepath.Dir(e.Bin))
	}
	if want := "0.0.0.post1+g0123abc.dirty"; got.Version != want {
		t.Errorf("rtrain._version.__version__ = %q, want %q", got.Version, want)
	}
	if got.BinaryVersion != e.Version {
		t.Errorf("rtrain._version.binary_version = %q, want %q", got.BinaryVersion, e.Version)
	}
	for _, f := range []string{"py.typed", "_binary.py", "_cli.py", "torch.py", "tune/__init__.py", "tune/search/optuna/__init__.py"} {
		if _, err := os.Stat(filepath.Join(pkg, f)); err != nil {
			t.Errorf("the installed package lacks %s: %v", f, err)
		}
	}
	st, err := os.Stat(filepath.Join(pkg, "_bin", "rtrain"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("installed rtrain/_bin/rtrain has mode %v, want -rwxr-xr-x", st.Mode())
	}
}

// The venv's `rtrain` command is the bundled binary, found on PATH.
func TestWheelConsoleScriptRunsTheBinary(t *testing.T) {
	e := pyenv.Venv(t)
	cmd := exec.Command("sh", "-c", "rtrain version && rtrain no-such-command")
	cmd.Dir = t.TempDir()
	cmd.Env = e.Env()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("rtrain no-such-command: %v, want it to fail\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if want := "rtrain " + e.Version + " ("; !strings.HasPrefix(lines[0], want) {
		t.Errorf("rtrain version printed %q, want %q...", lines[0], want)
	}
	// The binary's argv[0] is "rtrain", not the path of the script.
	if !strings.Contains(string(out), "run 'rtrain --help'") {
		t.Errorf("an unknown command's message does not name 'rtrain --help':\n%s", out)
	}
}

// A binary of another version than the package's is refused, in one line
// that names both versions and both paths.
func TestWheelVersionMismatch(t *testing.T) {
	e := pyenv.Venv(t)
	got := installedPackage(t, e)
	// A copy of the installed package whose binary says it is 9.9.9, first
	// on PYTHONPATH.
	root := t.TempDir()
	pkg := filepath.Join(root, "rtrain")
	if err := os.CopyFS(pkg, os.DirFS(filepath.Dir(got.File))); err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(pkg, "_bin", "rtrain")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'rtrain 9.9.9 (commit x, go, linux/amd64)'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	extra := []string{"PYTHONPATH=" + root}

	out, stderr, err := pyOut(t, e, extra, "-c", `
import sys
import rtrain, rtrain._binary as b
assert rtrain.__file__.startswith(sys.argv[1]), rtrain.__file__
try:
    b.check_version()
except b.VersionMismatchError as e:
    print(e)
    sys.exit(3)
`, root)
	if code := exitCode(err); code != 3 {
		t.Fatalf("check_version: exit %d (%v), want 3 (VersionMismatchError)\n%s%s", code, err, out, stderr)
	}
	for _, want := range []string{"9.9.9", e.Version, fake, pkg, "reinstall the wheel"} {
		if !strings.Contains(out, want) {
			t.Errorf("VersionMismatchError's message lacks %q: %s", want, out)
		}
	}

	// The console script says so in that one line, without a traceback.
	out, stderr, err = pyOut(t, e, extra, "-c", "import rtrain._cli; rtrain._cli.main()", "version")
	if code := exitCode(err); code != 1 {
		t.Errorf("rtrain version with a 9.9.9 binary: exit %d (%v), want 1\n%s%s", code, err, out, stderr)
	}
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.Contains(stderr, "9.9.9") {
		t.Errorf("rtrain version with a 9.9.9 binary said %q, want one line naming 9.9.9", stderr)
	}
	if out != "" {
		t.Errorf("rtrain version with a 9.9.9 binary ran it: %q", out)
	}
}

func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// Every file in the wheel is in its RECORD with its hash and size, and the
// build is byte for byte the same when repeated.
func TestWheelRecordAndDeterminism(t *testing.T) {
	e := pyenv.Venv(t)
	zr, err := zip.OpenReader(e.Wheel)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()

	content := map[string][]byte{}
	var names []string
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		content[f.Name] = b
		names = append(names, f.Name)
		if f.Name == "rtrain/_bin/rtrain" && f.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v in the wheel, want -rwxr-xr-x", f.Name, f.Mode())
		}
	}
	info := "rtrain-0.0.0.post1+g0123abc.dirty.dist-info/"
	rows, err := csv.NewReader(bytes.NewReader(content[info+"RECORD"])).ReadAll()
	if err != nil {
		t.Fatalf("%sRECORD: %v", info, err)
	}
	var recorded []string
	for _, row := range rows {
		name := row[0]
		recorded = append(recorded, name)
		if name == info+"RECORD" {
			if row[1] != "" || row[2] != "" {
				t.Errorf("RECORD lists itself with %q, %q, want no hash or size", row[1], row[2])
			}
			continue
		}
		sum := sha256.Sum256(content[name])
		if want := "sha256=" + base64.RawURLEncoding.EncodeToString(sum[:]); row[1] != want {
			t.Errorf("RECORD has %s for %s, want %s", row[1], name, want)
		}
		if want := strconv.Itoa(len(content[name])); row[2] != want {
			t.Errorf("RECORD says %s has %s bytes, want %s", name, row[2], want)
		}
	}
	if diff := cmp.Diff(names, recorded); diff != "" {
		t.Errorf("RECORD (+) lists other files than the wheel holds (-), or in another order:\n%s", diff)
	}
	for _, want := range []string{"rtrain/_version.py", "rtrain/py.typed", info + "METADATA", info + "WHEEL", info + "entry_points.txt"} {
		if _, ok := content[want]; !ok {
			t.Errorf("the wheel lacks %s", want)
		}
	}
	if want := "[console_scripts]\nrtrain = rtrain._cli:main\n"; string(content[info+"entry_points.txt"]) != want {
		t.Errorf("entry_points.txt = %q, want %q", content[info+"entry_points.txt"], want)
	}
	if strings.Contains(string(content[info+"METADATA"]), "Requires-Dist") {
		t.Errorf("METADATA requires other packages, so pip needs the network:\n%s", content[info+"METADATA"])
	}

	again := t.TempDir()
	out, err := exec.Command(pyenv.Python, "../scripts/build-wheel.py", "--binary", e.Binary, "--version", e.Version, "--out", again).CombinedOutput()
	if err != nil {
		t.Fatalf("build-wheel.py: %v\n%s", err, out)
	}
	first, _ := os.ReadFile(e.Wheel)
	second, err := os.ReadFile(filepath.Join(again, filepath.Base(e.Wheel)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("the same binary and version built a different wheel")
	}
}

// build-wheel.py --tree lays the package out for a python without pip, as
// `make run` does for Debian's: rerun, it replaces what it wrote.
func TestWheelTreeForAPythonWithoutPip(t *testing.T) {
	e := pyenv.Venv(t)
	tree, site := t.TempDir(), t.TempDir()
	pth := filepath.Join(site, "rtrain.pth")
	for range 2 {
		out, err := exec.Command(pyenv.Python, "../scripts/build-wheel.py", "--binary", e.Binary, "--version", e.Version, "--tree", tree, "--pth", pth).CombinedOutput()
		if err != nil {
			t.Fatalf("build-wheel.py --tree: %v\n%s", err, out)
		}
	}
	if b, _ := os.ReadFile(pth); string(b) != tree+"\n" {
		t.Errorf("rtrain.pth = %q, want %q", b, tree+"\n")
	}
	if entries, _ := os.ReadDir(tree); len(entries) != 1 || entries[0].Name() != "rtrain" {
		t.Errorf("the tree holds %v, want rtrain alone (no temporary leftovers)", entries)
	}
	if link, err := os.Readlink(filepath.Join(tree, "rtrain", "_bin", "rtrain")); err != nil || link != e.Binary {
		t.Errorf("rtrain/_bin/rtrain links to %q (%v), want %s", link, err, e.Binary)
	}

	// A python that reads the .pth (as its user site-packages) imports the
	// tree's package, and its binary passes the version check.
	cmd := exec.Command(pyenv.Python, "-c", `
import site, sys
site.addsitedir(sys.argv[1])
import rtrain, rtrain._binary as b
b.check_version()
print(rtrain.__file__)
`, site)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PYTHONNOUSERSITE=1", "PYTHONPATH=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("import rtrain from the tree: %v\n%s", err, out)
	}
	if want := filepath.Join(tree, "rtrain", "__init__.py"); strings.TrimSpace(string(out)) != want {
		t.Errorf("rtrain.__file__ = %s, want %s", out, want)
	}
}

// The source tree has no binary and no _version.py: the check passes and
// asking for the binary says how to get one.
func TestSourceTreeHasNoBinary(t *testing.T) {
	if _, err := os.Stat(pyenv.Python); err != nil {
		t.Skipf("skipping: no %s", pyenv.Python)
	}
	cmd := exec.Command(pyenv.Python, "-c", `
import rtrain._binary as b
b.check_version()
try:
    b.binary_path()
except RuntimeError as e:
    print(e)
`)
	cmd.Env = append(os.Environ(), "PYTHONPATH=.", "PYTHONNOUSERSITE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if want := "not installed from a wheel; run `make wheel && pip install dist/rtrain-*.whl`"; !strings.Contains(string(out), want) {
		t.Errorf("binary_path() said %q, want it to say %q", out, want)
	}
}
