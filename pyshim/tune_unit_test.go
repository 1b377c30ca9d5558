package pyshim

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Every .py file of the package is embedded, the subpackages' included, and
// nothing else is: no __pycache__, nothing the patterns in install.go miss.
func TestEmbedsEveryPythonFile(t *testing.T) {
	var onDisk []string
	err := filepath.WalkDir("rtrain", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "__pycache__" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".py") {
			onDisk = append(onDisk, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	onDisk = append(onDisk, "sitecustomize.py")
	var embedded []string
	err = fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			embedded = append(embedded, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(onDisk)
	slices.Sort(embedded)
	if diff := cmp.Diff(onDisk, embedded); diff != "" {
		t.Errorf("embedded files (+) differ from the package's .py files (-); extend //go:embed in install.go:\n%s", diff)
	}
}

// tunePython runs /usr/bin/python3's unittest discovery over
// testdata/tune_tests with pattern, against this tree's rtrain.
func tunePython(t *testing.T, pattern string) {
	t.Helper()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		missingPython(t, py)
	}
	if err := exec.Command(py, "-c", "import numpy, optuna").Run(); err != nil {
		missingPython(t, py+" with numpy and optuna")
	}
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-m", "unittest", "discover", "-s", "testdata/tune_tests", "-p", pattern, "-v")
	// No bytecode beside the sources: it is not embedded, but it is clutter.
	cmd.Env = append(os.Environ(), "PYTHONPATH="+here, "PYTHONDONTWRITEBYTECODE=1", "PYTHONNOUSERSITE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python -m unittest discover -p %s: %v\n%s", pattern, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Log(lines[len(lines)-3:])
}

func missingPython(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI", what)
	}
	t.Skipf("skipping: no %s", what)
}

// rtrain.tune's decision logic: samplers, variant generation, searchers and
// schedulers, by testdata/tune_tests/test_*.py.
func TestTunePythonUnits(t *testing.T) {
	tunePython(t, "test_*.py")
}

// OptunaSearch finds a better config than random search at the same budget,
// by testdata/tune_tests/slow_*.py (some seconds: 120 searches).
func TestTuneOptunaBeatsRandom(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the Optuna comparison in -short mode")
	}
	tunePython(t, "slow_*.py")
}
