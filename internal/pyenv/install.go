package pyenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ErrNoVenv is Install's error when the python lacks venv or pip
// (Debian's python3-venv, python3-pip).
var ErrNoVenv = errors.New("pyenv: python lacks venv or pip (python3-venv, python3-pip)")

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

// Install builds the wheel of the rtrain binary at binary, with the
// version that binary reports (as `make wheel` does, so the package's
// version check passes), and pip-installs it, offline, into a new venv in
// dir/venv made from python with its system site-packages (Debian's torch
// and cloudpickle). The wheel goes to dir/dist. It wraps ErrNoVenv when
// python cannot make a venv; what it wrote stays in dir either way.
func Install(dir, python, binary string) (*Env, error) {
	start := time.Now()
	if err := checkVenv(python); err != nil {
		return nil, err
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	version, err := BinaryVersion(binary)
	if err != nil {
		return nil, err
	}
	venv := filepath.Join(dir, "venv")
	e := &Env{
		Python:  filepath.Join(venv, "bin", "python"),
		Bin:     filepath.Join(venv, "bin"),
		Binary:  binary,
		Version: version,
		venv:    venv,
	}
	wheel, err := run(root, python, "scripts/build-wheel.py", "--binary", binary, "--version", version, "--out", filepath.Join(dir, "dist"))
	if err != nil {
		return nil, err
	}
	e.Wheel = string(bytes.TrimSpace(wheel))
	if _, err := run(root, python, "-m", "venv", "--system-site-packages", venv); err != nil {
		return nil, err
	}
	if _, err := run(root, filepath.Join(e.Bin, "pip"), "install", "--no-index", "--no-deps", "--quiet", e.Wheel); err != nil {
		return nil, err
	}
	e.Took = time.Since(start)
	return e, nil
}

// checkVenv wraps ErrNoVenv when python cannot make a venv with pip in it.
func checkVenv(python string) error {
	if err := exec.Command(python, "-c", "import venv, ensurepip, pip").Run(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNoVenv, python, err)
	}
	return nil
}

// BinaryVersion is what `BINARY version` says the binary's version is:
// its second word ("rtrain v1.2.3 (commit ...)").
func BinaryVersion(binary string) (string, error) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil {
		return "", fmt.Errorf("pyenv: %s version: %w", binary, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 || f[0] != "rtrain" {
		return "", fmt.Errorf("pyenv: %s version printed %q, not \"rtrain VERSION ...\"", binary, out)
	}
	return f[1], nil
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

// moduleRoot is the directory of the go.mod of the module this runs in,
// which holds scripts/build-wheel.py.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("pyenv: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("pyenv: not inside a Go module")
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
		return nil, fmt.Errorf("pyenv: %s: %w\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}
