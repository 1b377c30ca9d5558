package launcher

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/launcher/cgroup"
)

// The test binary doubles as the worker: run with LAUNCHER_CHILD set, it
// plays the part that variable names instead of running tests (Nomad's
// trick), so these tests need no Python.
func TestMain(m *testing.M) {
	if RunReaperIfAsked() {
		return
	}
	if role := os.Getenv("LAUNCHER_CHILD"); role != "" {
		child(role)
		return
	}
	goleak.VerifyTestMain(m)
}

func child(role string) {
	switch role {
	case "exit":
		code, _ := strconv.Atoi(os.Args[1])
		fmt.Println("out line")
		fmt.Fprintln(os.Stderr, "err line")
		os.Exit(code)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready", os.Getpid())
		time.Sleep(time.Hour)
	case "term-ok":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM) // before "ready": the test signals on it
		fmt.Println("ready")
		<-c
		os.Exit(0)
	case "spawn":
		// A grandchild in the worker's process group that ignores SIGTERM.
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "LAUNCHER_CHILD=ignore-term")
		cmd.Stdout = os.Stdout
		if err := cmd.Start(); err != nil {
			os.Exit(3)
		}
		fmt.Println("ready", cmd.Process.Pid)
		time.Sleep(time.Hour)
	case "spawn-setsid":
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "LAUNCHER_CHILD=ignore-term")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			os.Exit(3)
		}
		fmt.Println("ready", cmd.Process.Pid)
		time.Sleep(time.Hour)
	case "launch":
		// A launcher in its own right, for killing it while its worker runs.
		p, err := Start(Spec{Path: os.Args[0], Env: append(os.Environ(), "LAUNCHER_CHILD=spawn-setsid"), Stdout: os.Stdout})
		if err != nil {
			os.Exit(4)
		}
		<-p.Done()
		os.Exit(0)
	case "oom":
		// Touch 1 GiB, page by page, so that all of it is charged.
		var keep [][]byte
		for range 64 {
			b := make([]byte, 16<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("survived", len(keep))
		os.Exit(0)
	case "launch-in-cgroup":
		// A launcher whose worker has a cgroup, for killing it mid-job.
		spec := Spec{Path: os.Args[0], Env: append(os.Environ(), "LAUNCHER_CHILD=spawn-setsid"), Stdout: os.Stdout,
			Cgroup: &cgroup.Spec{Name: os.Getenv("LAUNCHER_CGROUP")}}
		p, err := Start(spec)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		<-p.Done()
		os.Exit(0)
	case "launch-leased":
		// A launcher whose worker holds a lease, for freezing it mid-job.
		spec := Spec{Path: os.Args[0], Env: append(os.Environ(), "LAUNCHER_CHILD=spawn-setsid"), Stdout: os.Stdout,
			Lease: os.Getenv("LAUNCHER_LEASE")}
		p, err := Start(spec)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		<-p.Done()
		os.Exit(0)
	case "spawn-and-exit":
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "LAUNCHER_CHILD=ignore-term")
		if err := cmd.Start(); err != nil {
			os.Exit(3)
		}
		fmt.Println("spawned", cmd.Process.Pid)
		os.Exit(0)
	}
	os.Exit(100)
}

// lines collects emitted lines.
type lines struct {
	mu  sync.Mutex
	got []string
	ch  chan string
}

func newLines() *lines { return &lines{ch: make(chan string, 100)} }

func (l *lines) writer() *LineWriter {
	return &LineWriter{Emit: func(s string) {
		l.mu.Lock()
		l.got = append(l.got, s)
		l.mu.Unlock()
		l.ch <- s
	}}
}

func start(t *testing.T, marker, role string, args []string, out, errw *LineWriter) *Process {
	t.Helper()
	spec := Spec{Path: os.Args[0], Args: args, Env: append(os.Environ(), "LAUNCHER_CHILD="+role, marker)}
	if out != nil {
		spec.Stdout = out
	}
	if errw != nil {
		spec.Stderr = errw
	}
	p, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background(), 0) })
	return p
}

func waitLine(t *testing.T, l *lines, prefix string) string {
	t.Helper()
	select {
	case s := <-l.ch:
		if !strings.HasPrefix(s, prefix) {
			t.Fatalf("line %q, want prefix %q", s, prefix)
		}
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("no line %q from the child", prefix)
	}
	return ""
}

func TestExitCodesAndOutput(t *testing.T) {
	for _, code := range []int{0, 1, 42} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			out, errs := newLines(), newLines()
			p := start(t, testutil.Marker(t), "exit", []string{strconv.Itoa(code)}, out.writer(), errs.writer())
			<-p.Done()
			x := p.Exit()
			if x.Code != code || x.Signal != 0 || x.Stopped {
				t.Errorf("exit = %+v, want code %d, no signal, not stopped", x, code)
			}
			if x.Success() != (code == 0) {
				t.Errorf("Success() = %v for code %d", x.Success(), code)
			}
			// Done waits for the output to drain.
			if strings.Join(out.got, "|") != "out line" || strings.Join(errs.got, "|") != "err line" {
				t.Errorf("stdout %q, stderr %q", out.got, errs.got)
			}
		})
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	out := newLines()
	p := start(t, testutil.Marker(t), "ignore-term", nil, out.writer(), nil)
	waitLine(t, out, "ready")
	p.Stop(context.Background(), 200*time.Millisecond)
	x := p.Exit()
	if x.Signal != syscall.SIGKILL || !x.Stopped {
		t.Errorf("exit = %+v, want SIGKILL and Stopped", x)
	}
}

func TestStopGivesGraceToCooperativeWorker(t *testing.T) {
	out := newLines()
	p := start(t, testutil.Marker(t), "term-ok", nil, out.writer(), nil)
	waitLine(t, out, "ready")
	p.Stop(context.Background(), time.Minute)
	if x := p.Exit(); x.Code != 0 || x.Signal != 0 || !x.Stopped {
		t.Errorf("exit = %+v, want a clean exit 0 after SIGTERM, Stopped", x)
	}
}

func TestStopKillsTheWholeGroup(t *testing.T) {
	marker := testutil.Marker(t)
	out := newLines()
	p := start(t, marker, "spawn", nil, out.writer(), nil)
	// The grandchild's "ready" and the child's may come in either order.
	got := []string{waitLine(t, out, "ready"), waitLine(t, out, "ready")}
	if len(testutil.Processes(marker)) != 3 {
		t.Fatalf("want reaper, worker and grandchild alive, got pids %v (lines %q)", testutil.Processes(marker), got)
	}
	p.Stop(context.Background(), 100*time.Millisecond)
	testutil.NoProcesses(t, marker, 5*time.Second)
}

func TestReapKillsWhatASuccessfulWorkerLeft(t *testing.T) {
	marker := testutil.Marker(t)
	var out bytes.Buffer
	p, err := Start(Spec{Path: os.Args[0], Env: append(os.Environ(), "LAUNCHER_CHILD=spawn-and-exit", marker), Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if !p.Exit().Success() {
		t.Fatalf("exit = %+v", p.Exit())
	}
	p.Reap()
	testutil.NoProcesses(t, marker, 5*time.Second)
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(Spec{}); err == nil {
		t.Error("Start with no program succeeded")
	}
	if _, err := Start(Spec{Path: "/nonexistent/python"}); err == nil {
		t.Error("Start of a missing program succeeded")
	}
}

func TestStopKillsADescendantInItsOwnSession(t *testing.T) {
	marker := testutil.Marker(t)
	out := newLines()
	p := start(t, marker, "spawn-setsid", nil, out.writer(), nil)
	waitLine(t, out, "ready")
	p.Stop(context.Background(), 100*time.Millisecond)
	testutil.NoProcesses(t, marker, 5*time.Second)
}

func TestKilledLauncherLeavesNothing(t *testing.T) {
	marker := testutil.Marker(t)
	out := newLines()
	launcherProc := start(t, marker, "launch", nil, out.writer(), nil)
	waitLine(t, out, "ready")
	// worker (reaper + child) and its setsid grandchild, under the launcher
	if n := len(testutil.Processes(marker)); n < 4 {
		t.Fatalf("%d processes alive, want launcher, reaper, worker and grandchild", n)
	}
	if err := syscall.Kill(launcherProc.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.NoProcesses(t, marker, 5*time.Second)
}

func TestReaperKeepsTheExitStatus(t *testing.T) {
	if !ReaperAvailable() {
		t.Fatal("TestMain calls RunReaperIfAsked, so the reaper must be available")
	}
	out := newLines()
	p := start(t, testutil.Marker(t), "ignore-term", nil, out.writer(), nil)
	pid, err := strconv.Atoi(strings.TrimPrefix(waitLine(t, out, "ready"), "ready "))
	if err != nil {
		t.Fatal(err)
	}
	if pid != p.Pid() || pid == p.pgid() {
		t.Fatalf("worker pid %d, Pid() %d, group %d: want the worker under a reaper", pid, p.Pid(), p.pgid())
	}
	// Killed from outside, as the OOM killer would.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if x := p.Exit(); x.Signal != syscall.SIGKILL || x.Stopped {
		t.Errorf("exit = %+v, want the worker's SIGKILL passed through", x)
	}
}

func TestReaperPassesTheWorkersSignal(t *testing.T) {
	// The worker is a shell, not a Go child: the Go runtime ignores SIGUSR1
	// and turns SIGSEGV into a panic, while an interpreter dies of them.
	for _, sig := range []syscall.Signal{syscall.SIGSEGV, syscall.SIGABRT, syscall.SIGUSR1, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			out, errs := newLines(), newLines()
			script := fmt.Sprintf("echo pid $$; kill -%d $$; sleep 60", int(sig))
			p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", script}, Env: append(os.Environ(), testutil.Marker(t)), Stdout: out.writer(), Stderr: errs.writer()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Stop(context.Background(), 0) })
			line := waitLine(t, out, "pid ")
			select {
			case <-p.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("the worker did not die of %s", sig)
			}
			if x := p.Exit(); x.Signal != sig || x.Code != -1 || x.Stopped {
				t.Errorf("exit = %+v, want killed by %s", x, sig)
			}
			if want := fmt.Sprintf("pid %d", p.Pid()); line != want {
				t.Errorf("Pid() = %d, the worker said %q", p.Pid(), line)
			}
			// The reaper must not crash in the worker's place.
			if s := strings.Join(errs.got, "\n"); strings.Contains(s, "goroutine") || strings.Contains(s, "SIG") {
				t.Errorf("stderr has a crash report:\n%s", s)
			}
		})
	}
}

func TestRelativeProgramPathIsFromTheCaller(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, self)
	if err != nil || !strings.Contains(rel, "/") {
		t.Skipf("no relative path with a slash to the test binary (%q, %v)", rel, err)
	}
	p, err := Start(Spec{Path: rel, Args: []string{"0"}, Dir: t.TempDir(), Env: append(os.Environ(), "LAUNCHER_CHILD=exit", testutil.Marker(t))})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if x := p.Exit(); !x.Success() {
		t.Errorf("exit = %+v, want success", x)
	}
}
