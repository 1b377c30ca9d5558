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
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
	for _, f := range []string{"__init__.py", "_context.py", "_channel.py", "_session.py", "torch.py"} {
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
// script, not to rtrain's launch path. Any python3 will do for this.
func TestShimImportsNothingHeavy(t *testing.T) {
	py, dir := pythonWithShim(t)
	cmd := exec.Command(py, "-c", `
import sys, rtrain
assert "torch" not in sys.modules, "import rtrain imported torch"
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
	for _, want := range []string{"rtrain.report: {'loss': 0.5, 'epoch': 1}", "typeerror rtrain.report: metric 'bad' is a object"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// rtrain's sitecustomize notes an uncaught exception, and only that, in
// the worker's error file, before Python prints the traceback; processes
// the worker starts do not inherit the file.
func TestSitecustomizeNotesAnUncaughtException(t *testing.T) {
	py, dir := pythonWithShim(t)
	errFile := filepath.Join(t.TempDir(), "rank_0.error.json")
	cmd := exec.Command(py, "-c", `
import os, subprocess, sys, traceback
assert "`+ErrorFileEnv+`" not in os.environ, "the error file is left to children"
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
`, errFile)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, ErrorFileEnv+"="+errFile)
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
	b, err := os.ReadFile(errFile)
	if err != nil {
		t.Fatalf("no error file: %v\n%s", err, out)
	}
	var note struct {
		Time      float64
		Exception string
	}
	if err := json.Unmarshal(b, &note); err != nil {
		t.Fatalf("error file %q: %v", b, err)
	}
	at := time.Unix(0, int64(note.Time*1e9))
	if at.Before(before.Add(-time.Second)) || at.After(after) {
		t.Errorf("noted at %s, not while it ran (%s to %s)", at, before, after)
	}
	if note.Exception != "ValueError: boom" {
		t.Errorf("exception %q, want ValueError: boom", note.Exception)
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
