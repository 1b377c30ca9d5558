package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// PythonEnv names the variable that picks the interpreter when Config.Python
// is empty.
const PythonEnv = "RTRAIN_PYTHON"

// probeTimeout bounds one interpreter probe: a python that hangs at start
// must not hang rtrain.
const probeTimeout = 20 * time.Second

// Interpreter is a python that can run the job.
type Interpreter struct {
	Path         string
	TorchVersion string
	// How it was chosen: "--python", RTRAIN_PYTHON or "PATH".
	Source string
}

// probe finds torch without importing it (importing torch takes a second)
// and compiles the script, so a syntax error is reported before any worker
// starts.
const probe = `
import importlib.util, json, os, re, sys
out = {"torch": None, "syntax": None}
spec = importlib.util.find_spec("torch")
if spec is not None and spec.origin:
    out["torch"] = "unknown"
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "version.py")) as f:
            m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", f.read())
        if m:
            out["torch"] = m.group(1)
    except OSError:
        pass
if len(sys.argv) > 1:
    try:
        with open(sys.argv[1], "rb") as f:
            compile(f.read(), sys.argv[1], "exec")
    except SyntaxError as e:
        out["syntax"] = "line %s: %s" % (e.lineno, e.msg)
print(json.dumps(out))
`

type probeResult struct {
	Torch  *string `json:"torch"`
	Syntax *string `json:"syntax"`
}

func runProbe(ctx context.Context, python, script string) (probeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	args := []string{"-c", probe}
	if script != "" {
		args = append(args, script)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg != "" {
			return probeResult{}, fmt.Errorf("%s: %w (%s)", python, err, msg)
		}
		return probeResult{}, fmt.Errorf("%s: %w", python, err)
	}
	var r probeResult
	if err := json.Unmarshal(out, &r); err != nil {
		return probeResult{}, fmt.Errorf("%s: unexpected probe output %q: %w", python, out, err)
	}
	return r, nil
}

// FindPython picks the interpreter: explicit if set, else $RTRAIN_PYTHON,
// else the first python3 on PATH that can import torch. It also compiles
// script (when not empty) with that interpreter and fails on a syntax error.
func FindPython(ctx context.Context, explicit, script string) (Interpreter, error) {
	check := func(path, source string) (Interpreter, error) {
		r, err := runProbe(ctx, path, script)
		if err != nil {
			return Interpreter{}, invalid("%s %s cannot run: %w", source, path, err)
		}
		if r.Torch == nil {
			return Interpreter{}, invalid("%s %s cannot import torch; install PyTorch for it or pick another interpreter", source, path)
		}
		if r.Syntax != nil {
			return Interpreter{}, syntaxError(script, *r.Syntax)
		}
		return Interpreter{Path: path, TorchVersion: *r.Torch, Source: source}, nil
	}
	if explicit != "" {
		p, err := exec.LookPath(explicit)
		if err != nil {
			return Interpreter{}, invalid("--python %s: %w", explicit, err)
		}
		return check(p, "--python")
	}
	if env := os.Getenv(PythonEnv); env != "" {
		p, err := exec.LookPath(env)
		if err != nil {
			return Interpreter{}, invalid("%s=%s: %w", PythonEnv, env, err)
		}
		return check(p, PythonEnv)
	}
	var tried []string
	seen := map[string]bool{}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, "python3")
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			real = p
		}
		if seen[real] {
			continue
		}
		seen[real] = true
		r, err := runProbe(ctx, p, script)
		if err != nil {
			if ctx.Err() != nil {
				return Interpreter{}, ctx.Err()
			}
			tried = append(tried, p+" (does not run)")
			continue
		}
		if r.Torch == nil {
			tried = append(tried, p+" (no torch)")
			continue
		}
		if r.Syntax != nil {
			return Interpreter{}, syntaxError(script, *r.Syntax)
		}
		return Interpreter{Path: p, TorchVersion: *r.Torch, Source: "PATH"}, nil
	}
	if len(tried) == 0 {
		return Interpreter{}, invalid("no python3 on PATH; install Python 3 with PyTorch (Debian: apt-get install python3-torch) or pass --python")
	}
	return Interpreter{}, invalid("no python3 on PATH can import torch (tried %s); install PyTorch (Debian: apt-get install python3-torch) or pass --python /path/to/python", strings.Join(tried, ", "))
}

func syntaxError(script, msg string) error {
	return &ScriptError{Script: script, Msg: "syntax error at " + msg}
}

// ScriptError is a script that cannot run at all, found before launch.
type ScriptError struct {
	Script string
	Msg    string
}

func (e *ScriptError) Error() string { return fmt.Sprintf("%s: %s", e.Script, e.Msg) }

// Unwrap makes a ScriptError an ErrInvalidConfig.
func (e *ScriptError) Unwrap() error { return ErrInvalidConfig }

// ResolvePython finds python on an agent's node for a job: the
// agent.PythonResolver of rtrain's agents.
func ResolvePython(ctx context.Context, asked, script string) (string, string, error) {
	py, err := FindPython(ctx, asked, script)
	if err != nil {
		return "", "", err
	}
	return py.Path, py.TorchVersion, nil
}
