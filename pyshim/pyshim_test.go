package pyshim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/rtrain/rtrain/internal/pyenv"
	"github.com/rtrain/rtrain/internal/testutil"
)

// The drivers' jobs run in a cgroup parent of the tests' own, removed
// (and checked empty) before goleak looks.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(isolated{m}, goleak.Cleanup(func(code int) { pyenv.Cleanup(); os.Exit(code) }))
}

type isolated struct{ m *testing.M }

func (i isolated) Run() int { return testutil.RunIsolated(i.m, &cgroupParent) }

// cgroupParent holds every cgroup this package's jobs make.
var cgroupParent string

func TestInstallIsIdempotentAndConcurrent(t *testing.T) {
	cache := t.TempDir()
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	errs := make([]error, 8)
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = Install(cache) })
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if dirs[i] != dirs[0] {
			t.Errorf("install %d went to %s, want %s", i, dirs[i], dirs[0])
		}
	}
	for _, f := range []string{"__init__.py", "_context.py", "_channel.py", "_session.py", "torch.py",
		"tune/__init__.py", "tune/search/sample.py", "tune/search/optuna/__init__.py", "tune/schedulers/pbt.py"} {
		if _, err := os.Stat(filepath.Join(dirs[0], "rtrain", f)); err != nil {
			t.Errorf("installed package lacks %s: %v", f, err)
		}
	}
	entries, _ := os.ReadDir(cache)
	if len(entries) != 1 {
		t.Errorf("cache holds %d entries, want the one package directory (no temporary leftovers)", len(entries))
	}
}

type recorder struct {
	mu      sync.Mutex
	reports []Report
	err     error
}

func (r *recorder) Report(_ context.Context, rep Report) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, rep)
	return r.err
}

func listen(t *testing.T, h Handler) *Server {
	t.Helper()
	s, err := Listen(filepath.Join(t.TempDir(), "a.sock"), h, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func call(t *testing.T, rw *bufio.ReadWriter, msg string) reply {
	t.Helper()
	if _, err := rw.WriteString(msg + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := rw.Flush(); err != nil {
		t.Fatal(err)
	}
	line, err := rw.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var r reply
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestServerProtocol(t *testing.T) {
	rec := &recorder{}
	s := listen(t, rec)
	c, err := net.Dial("unix", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rw := bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))

	if r := call(t, rw, `{"op":"hello","rank":1,"pid":42}`); !r.OK {
		t.Fatalf("hello: %+v", r)
	}
	if r := call(t, rw, `{"op":"report","rank":1,"metrics":{"zeta":1,"alpha":0.5,"tag":"x"}}`); !r.OK {
		t.Fatalf("report: %+v", r)
	}
	if r := call(t, rw, `{"op":"teleport"}`); r.OK || !strings.Contains(r.Error, "unknown op") {
		t.Errorf("unknown op: %+v, want a refusal that says so", r)
	}
	if r := call(t, rw, `not json`); r.OK {
		t.Errorf("bad json accepted: %+v", r)
	}
	rec.err = errors.New("no room")
	if r := call(t, rw, `{"op":"report","rank":1,"metrics":{}}`); r.OK || r.Error != "no room" {
		t.Errorf("handler error: %+v, want it passed to the worker", r)
	}

	if len(rec.reports) != 2 {
		t.Fatalf("%d reports, want 2", len(rec.reports))
	}
	got := rec.reports[0]
	if got.Rank != 1 {
		t.Errorf("rank = %d, want 1", got.Rank)
	}
	if diff := cmp.Diff([]string{"zeta", "alpha", "tag"}, got.Metrics.Keys); diff != "" {
		t.Errorf("metric order (-want +got):\n%s", diff)
	}
	b, _ := json.Marshal(got.Metrics)
	if string(b) != `{"zeta":1,"alpha":0.5,"tag":"x"}` {
		t.Errorf("metrics round trip = %s", b)
	}
}

func TestCloseEndsOpenConnections(t *testing.T) {
	s := listen(t, &recorder{})
	c, err := net.Dial("unix", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// goleak in TestMain checks the handler goroutine is gone.
}

// The shim must not import torch at import time: that second belongs to the
// script, not to rtrain's launch path, nor to a driver that runs
// TorchTrainer, whose workers import it. Any python3 will do for this.
func TestShimImportsNothingHeavy(t *testing.T) {
	py, dir := pythonWithShim(t)
	cmd := exec.Command(py, "-c", `
import sys, rtrain
assert "torch" not in sys.modules, "import rtrain imported torch"
from rtrain.torch import TorchConfig, TorchTrainer
TorchTrainer(lambda: None, scaling_config=rtrain.ScalingConfig(num_workers=2), torch_config=TorchConfig(backend="gloo"))
assert "torch" not in sys.modules, "rtrain.torch's TorchTrainer imported torch"
ctx = rtrain.get_context()
assert (ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank()) == (0, 1, 0)
assert rtrain.get_checkpoint() is None
rtrain.report({"loss": 0.5, "epoch": 1})
try:
    rtrain.report({"bad": object()})
except TypeError as e:
    print("typeerror", e)
`)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, AddrEnv+"=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"rtrain.report: {'loss': 0.5, 'epoch': 1}", "typeerror rtrain.report: metric 'bad' is of type object"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// rtrain's sitecustomize notes an uncaught exception, and only that, in
// the worker's exit file, before Python prints the traceback; processes
// the worker starts do not inherit the file.
func TestSitecustomizeNotesAnUncaughtException(t *testing.T) {
	py, dir := pythonWithShim(t)
	exitFile := filepath.Join(t.TempDir(), "rank_0.exit.json")
	cmd := exec.Command(py, "-c", `
import os, subprocess, sys, traceback
assert "`+ExitFileEnv+`" not in os.environ, "the exit file is left to children"
try:
    raise KeyError("handled")
except KeyError:
    traceback.print_exc()
    sys.excepthook(*sys.exc_info())  # as the code module does
assert not os.path.exists(sys.argv[1]), "a handled exception was noted"
child = os.fork()
if child == 0:
    raise RuntimeError("a forked child's own")
os.waitpid(child, 0)
assert not os.path.exists(sys.argv[1]), "a forked child's exception was noted"
raise ValueError("boom")
`, exitFile)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, ExitFileEnv+"="+exitFile)
	before := time.Now()
	out, err := cmd.CombinedOutput()
	after := time.Now()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("want exit code 1, got %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ValueError: boom") || !strings.Contains(string(out), "KeyError: 'handled'") {
		t.Errorf("tracebacks missing:\n%s", out)
	}
	note, err := ReadExitNote(exitFile)
	if err != nil {
		t.Fatal(err)
	}
	if note.Raised.Before(before.Add(-time.Second)) || note.Raised.After(after) {
		t.Errorf("noted at %s, not while it ran (%s to %s)\n%s", note.Raised, before, after, out)
	}
	if note.Exception != "ValueError: boom" {
		t.Errorf("exception %q, want ValueError: boom", note.Exception)
	}
	if !note.Finished.IsZero() {
		t.Errorf("a program that raised is noted as finished at %s", note.Finished)
	}
	if _, err := os.Stat(exitFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the note is still there once read: %v", err)
	}
}

// A program that ends by itself is noted as finished, with the status it
// asked sys.exit for, once its own atexit handlers have run: what happens
// after is the interpreter's teardown. A forked child's end is not the
// worker's.
func TestSitecustomizeNotesTheFinish(t *testing.T) {
	py, dir := pythonWithShim(t)
	for name, tc := range map[string]struct {
		end      string
		code     int
		finished bool
	}{
		"ran to its end":   {end: "pass", finished: true},
		"sys.exit(0)":      {end: "sys.exit(0)", finished: true},
		"sys.exit()":       {end: "sys.exit()", finished: true},
		"sys.exit(3)":      {end: "sys.exit(3)", code: 3, finished: true},
		"sys.exit(msg)":    {end: "sys.exit('bye')", code: 1, finished: true},
		"os._exit":         {end: "os._exit(0)"},
		"killed by signal": {end: "os.kill(os.getpid(), signal.SIGKILL)"},
	} {
		t.Run(name, func(t *testing.T) {
			exitFile := filepath.Join(t.TempDir(), "rank_0.exit.json")
			marker := filepath.Join(t.TempDir(), "atexit-ran")
			cmd := exec.Command(py, "-c", `
import atexit, os, signal, sys
def last_words():
    assert not os.path.exists(sys.argv[1]), "noted as finished before the program's atexit handlers ran"
    open(sys.argv[2], "w").close()
atexit.register(last_words)
child = os.fork()
if child == 0:
    sys.exit(0)
os.waitpid(child, 0)
assert not os.path.exists(sys.argv[1]), "a forked child's end was noted"
`+tc.end, exitFile, marker)
			cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, ExitFileEnv+"="+exitFile)
			out, _ := cmd.CombinedOutput()
			if strings.Contains(string(out), "AssertionError") {
				t.Fatalf("%s", out)
			}
			note, err := ReadExitNote(exitFile)
			if err != nil {
				t.Fatal(err)
			}
			if got := !note.Finished.IsZero(); got != tc.finished {
				t.Fatalf("finished = %v, want %v\n%s", got, tc.finished, out)
			}
			if note.Code != tc.code {
				t.Errorf("code = %d, want %d", note.Code, tc.code)
			}
			if got, want := note.FinishedCleanly(), tc.finished && tc.code == 0; got != want {
				t.Errorf("FinishedCleanly = %v, want %v", got, want)
			}
			if tc.finished {
				if _, err := os.Stat(marker); err != nil {
					t.Errorf("the program's atexit handler did not run: %v", err)
				}
			}
		})
	}
}

// pythonWithShim is the first python3 on PATH and a directory the shim is
// installed in, for PYTHONPATH; the test is skipped without a python3.
func pythonWithShim(t *testing.T) (py, dir string) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	dir, err = Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return py, dir
}
