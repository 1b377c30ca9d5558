package pyenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Version is the version the binary is built with: git describe's shape,
// commits after a tag and a dirty tree, so the wheel's version takes every
// step of the conversion to PEP 440.
const Version = "v0.0.0-1-g0123abc-dirty"

// Python is the interpreter the venv is made from.
const Python = "/usr/bin/python3"

// Env is a venv with the wheel installed.
type Env struct {
	// Python is the venv's interpreter.
	Python string
	// Bin is the venv's bin directory, holding the `rtrain` console script.
	Bin string
	// Binary is the rtrain binary the wheel was built from.
	Binary string
	// Version is Binary's version, as `rtrain version` prints it.
	Version string
	// Wheel is the wheel pip installed.
	Wheel string
	// Took is how long building all of it took.
	Took time.Duration

	venv string
}

var (
	once  sync.Once
	dir   string // where build puts everything; Cleanup removes it
	env   *Env
	lacks string // what this machine lacks for env, when it does
	setUp error
)

// Venv returns the venv, building it on the first call. It skips t in
// -short mode, and when this machine lacks python3-venv or python3-pip
// (fails it under CI); it fails t when a build step fails.
func Venv(t testing.TB) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping the wheel's venv (builds and installs the wheel, about 10s) in -short mode")
	}
	once.Do(func() { env, lacks, setUp = build() })
	if lacks != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI (make test installs it)", lacks)
		}
		t.Skipf("skipping: %s", lacks)
	}
	if setUp != nil {
		t.Fatalf("pyenv: %v", setUp)
	}
	return env
}

// Cleanup removes what Venv built. Call it once the package's tests are
// done, from TestMain.
func Cleanup() {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// Env is this process's environment for running the venv's commands: PATH
// starts with Bin and VIRTUAL_ENV names the venv, as activating it does.
// PYTHONNOUSERSITE keeps what the user's site-packages hold (`make run`'s
// rtrain.pth, say) out of the venv's sys.path.
func (e *Env) Env() []string {
	var out []string
	path := e.Bin
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH":
			path += string(os.PathListSeparator) + v
		case "VIRTUAL_ENV", "PYTHONHOME", "PYTHONNOUSERSITE":
		default:
			out = append(out, kv)
		}
	}
	return append(out, "PATH="+path, "VIRTUAL_ENV="+e.venv, "PYTHONNOUSERSITE=1")
}

// build makes the Env in dir, or says what this machine lacks for it.
func build() (_ *Env, lacks string, _ error) {
	start := time.Now()
	if err := exec.Command(Python, "-c", "import venv, ensurepip, pip").Run(); err != nil {
		return nil, Python + " with venv and pip (python3-venv, python3-pip)", nil
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, "", err
	}
	if dir, err = os.MkdirTemp("", "rtrain-pyenv-"); err != nil {
		return nil, "", err
	}
	venv := filepath.Join(dir, "venv")
	e := &Env{
		Python:  filepath.Join(venv, "bin", "python"),
		Bin:     filepath.Join(venv, "bin"),
		Binary:  filepath.Join(dir, "rtrain"),
		Version: Version,
		venv:    venv,
	}
	ldflags := "-X github.com/rtrain/rtrain/internal/version.Version=" + Version
	if _, err := run(root, "go", "build", "-ldflags", ldflags, "-o", e.Binary, "./cmd/rtrain"); err != nil {
		return nil, "", err
	}
	wheel, err := run(root, Python, "scripts/build-wheel.py", "--binary", e.Binary, "--version", Version, "--out", filepath.Join(dir, "dist"))
	if err != nil {
		return nil, "", err
	}
	e.Wheel = string(bytes.TrimSpace(wheel))
	if _, err := run(root, Python, "-m", "venv", "--system-site-packages", venv); err != nil {
		return nil, "", err
	}
	if _, err := run(root, filepath.Join(e.Bin, "pip"), "install", "--no-index", "--no-deps", "--quiet", e.Wheel); err != nil {
		return nil, "", err
	}
	e.Took = time.Since(start)
	return e, "", nil
}

// moduleRoot is the directory of the go.mod of the module under test.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// run runs args in dir and returns its standard output; an error carries
// the command and its output (the build's cgo warnings included, which is
// why they are kept until then).
func run(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}
