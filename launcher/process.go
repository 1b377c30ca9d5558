package launcher

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rtrain/rtrain/launcher/cgroup"
)

// drainTimeout bounds how long output is read after a worker exits. A child
// the worker left behind can hold the pipes open; its output after that point
// is dropped rather than holding up the report of the exit.
const drainTimeout = 2 * time.Second

// killTimeout bounds the wait for a worker's cgroup to empty after SIGKILL.
// Only a process stuck in the kernel (uninterruptible sleep in a driver)
// outlasts it; the group is then left for the reaper and a later cleanup.
const killTimeout = 10 * time.Second

// ErrNoReaper is returned by Start for a Spec with a Cgroup when the
// program did not call RunReaperIfAsked: the reaper is what puts the
// worker in its group before it runs.
var ErrNoReaper = errors.New("launcher: cgroups need the reaper; call launcher.RunReaperIfAsked first in main")

// Spec says what to run.
type Spec struct {
	// Path is the program; Args are its arguments, without argv[0].
	Path string
	Args []string
	// Env is the complete environment, KEY=VALUE.
	Env []string
	// Dir is the working directory; empty means the launcher's.
	Dir string
	// Stdout and Stderr receive the streams as the process writes them. Nil
	// discards. They are written from one goroutine each.
	Stdout, Stderr io.Writer
	// Cgroup, when not nil, is the control group Start creates for the
	// worker. The worker is born inside it, so everything it spawns is too:
	// Stop kills the whole group, a grandchild that called setsid
	// included, and Reap removes it. Needs the reaper (ErrNoReaper).
	Cgroup *cgroup.Spec
	// Lease, when set, is a Lease's file: the worker's reaper kills it,
	// and all it spawned, once the lease's deadline passes unrenewed
	// (Exit.Fenced). Needs the reaper (ErrNoReaper).
	Lease string
}

// Exit is how a process ended.
type Exit struct {
	// Code is the exit status, or -1 when a signal ended the process.
	Code int
	// Signal is the signal that ended the process, or 0.
	Signal syscall.Signal
	// Time is when the exit was observed.
	Time time.Time
	// Stopped is true when Stop was called before the process ended: the
	// launcher, not the worker, ended it.
	Stopped bool
	// OOMKills counts the processes of the worker's cgroup, the worker or
	// what it spawned, that the kernel's OOM killer ended because the group
	// reached MemoryLimit; 0 without a memory limit.
	OOMKills int64
	// MemoryLimit is the worker's cgroup memory limit in bytes; 0 is none.
	MemoryLimit int64
	// Lost, when set, says why the worker's end was never observed: its
	// node died or could no longer be reached. Code is then -1.
	Lost string `json:",omitempty"`
	// Preempted says the worker was stopped because its node was drained
	// (taken away with notice), not because of anything it did.
	Preempted bool `json:",omitempty"`
	// Fenced says the worker's reaper killed it because its lease lapsed:
	// its agent lost the right to run it.
	Fenced bool `json:",omitempty"`
}

// Success reports whether the process exited 0 by itself.
func (e Exit) Success() bool { return e.Code == 0 && e.Signal == 0 }

// OutOfMemory reports whether the kernel killed the worker for reaching
// its memory limit.
func (e Exit) OutOfMemory() bool { return e.Signal == syscall.SIGKILL && e.OOMKills > 0 }

// String is the exit as a person would read it.
func (e Exit) String() string {
	if e.Lost != "" {
		return e.Lost
	}
	if e.Fenced {
		return "killed: its agent's lease from the head lapsed (fenced)"
	}
	if e.OutOfMemory() {
		if e.MemoryLimit > 0 {
			return "killed: out of memory, limit " + formatLimit(e.MemoryLimit)
		}
		return "killed: out of memory"
	}
	if e.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%s)", int(e.Signal), e.Signal)
	}
	return fmt.Sprintf("exit code %d", e.Code)
}

// Process is a started worker.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	// pid is the worker's own pid; the group id is cmd's (the reaper's when
	// there is one).
	pid int
	// status reads what the reaper says of the worker; nil without one.
	status     *bufio.Reader
	statusFile *os.File
	// group is the worker's cgroup, nil without one; memoryLimit its limit.
	group       *cgroup.Group
	memoryLimit int64

	mu       sync.Mutex
	stopping bool
	exit     Exit
}

// Start starts the process in a new process group. It returns once the
// process exists; Done closes when it has exited and its output is drained.
// Where the reaper is available (RunReaperIfAsked), the reaper runs the
// worker; otherwise Start runs it directly.
func Start(spec Spec) (*Process, error) {
	if spec.Path == "" {
		return nil, errors.New("launcher: no program to start")
	}
	if strings.ContainsRune(spec.Path, os.PathSeparator) {
		// A relative path names a file from here, not from spec.Dir.
		abs, err := filepath.Abs(spec.Path)
		if err != nil {
			return nil, fmt.Errorf("launcher: %w", err)
		}
		spec.Path = abs
	}
	if !ReaperAvailable() {
		if spec.Cgroup != nil || spec.Lease != "" {
			return nil, ErrNoReaper
		}
		return startDirect(spec)
	}
	return startUnderReaper(spec)
}

// startDirect runs the worker as rtrain's own child.
func startDirect(spec Spec) (*Process, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// The kernel signals the worker when the thread that started it
		// dies. Go only ends threads that a goroutine locked and left
		// locked, which nothing here does, so in practice this fires when
		// rtrain itself dies, SIGKILL included.
		Pdeathsig: syscall.SIGKILL,
	}
	return launch(cmd, spec, nil, nil)
}

// startUnderReaper runs the worker under its reaper, this binary run
// again: the reaper puts the worker in its cgroup before it runs, holds
// it to its lease, and reports its pid and its exit on the status pipe.
func startUnderReaper(spec Spec) (*Process, error) {
	// The reaper starts the worker with a plain exec: it needs a path.
	path, err := exec.LookPath(spec.Path)
	if err != nil {
		return nil, fmt.Errorf("launcher: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("launcher: find own binary for the reaper: %w", err)
	}
	cmd := exec.Command(self, append([]string{path}, spec.Args...)...)
	cmd.Env = append(append([]string(nil), spec.Env...), reaperEnv+"="+strconv.Itoa(os.Getpid()))
	if spec.Lease != "" {
		cmd.Env = append(cmd.Env, leaseEnv+"="+spec.Lease)
	}
	var group *cgroup.Group
	if spec.Cgroup != nil {
		if group, err = cgroup.New(*spec.Cgroup); err != nil {
			return nil, fmt.Errorf("launcher: %w", err)
		}
		cmd.Env = append(cmd.Env, reaperCgroupEnv+"="+group.Path())
	}
	cmd.Dir = spec.Dir
	// SIGHUP, which the reaper handles by killing the whole tree; a
	// SIGKILL would leave the worker's descendants behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGHUP}
	status, statusW, err := os.Pipe()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("launcher: pipe: %w", err), deleteGroup(group))
	}
	cmd.ExtraFiles = []*os.File{statusW} // fd 3: statusFD
	return launch(cmd, spec, group, status)
}

// launch starts cmd, its output copied to spec's writers. group is the
// worker's cgroup and status the reaper's status pipe, nil without a
// reaper; launch owns them from here, as it does cmd's ExtraFiles: the
// child's ends are closed once it has them, and everything is closed,
// the group deleted, when it cannot start.
func launch(cmd *exec.Cmd, spec Spec, group *cgroup.Group, status *os.File) (*Process, error) {
	out := &output{}
	ours := append([]*os.File(nil), cmd.ExtraFiles...) // the child's ends
	fail := func(err error) (*Process, error) {
		closeAll(ours)
		closeAll([]*os.File{status})
		out.abort()
		return nil, errors.Join(err, deleteGroup(group))
	}
	wOut, err := out.pipe(spec.Stdout)
	if err != nil {
		return fail(err)
	}
	ours = append(ours, wOut)
	wErr, err := out.pipe(spec.Stderr)
	if err != nil {
		return fail(err)
	}
	ours = append(ours, wErr)
	cmd.Stdout, cmd.Stderr = wOut, wErr
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("launcher: start %s: %w", spec.Path, err))
	}
	// The child has its own copies; ours must go or the readers never see EOF.
	closeAll(ours)

	p := &Process{cmd: cmd, done: make(chan struct{}), pid: cmd.Process.Pid, group: group}
	if spec.Cgroup != nil {
		p.memoryLimit = spec.Cgroup.MemoryBytes
	}
	if status != nil {
		p.statusFile, p.status = status, bufio.NewReader(status)
		// The reaper writes the pid as soon as the worker exists; nothing
		// comes when the worker could not be started (its wait says why).
		if line, err := p.status.ReadString('\n'); err == nil {
			if pid, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "pid ")); err == nil {
				p.pid = pid
			}
		}
	}
	go p.wait(out)
	return p, nil
}

// output copies a worker's stdout and stderr, each from its own pipe, to
// their writers.
type output struct {
	readers []*os.File
	copies  sync.WaitGroup
}

// pipe returns the write end of a pipe whose reads are copied to dst
// (nil discards).
func (o *output) pipe(dst io.Writer) (*os.File, error) {
	if dst == nil {
		dst = io.Discard
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("launcher: pipe: %w", err)
	}
	o.readers = append(o.readers, r)
	o.copies.Go(func() { _, _ = io.Copy(dst, r) })
	return w, nil
}

// drain waits for the copies to reach the end of their pipes, at most
// timeout: a child the worker left behind can hold them open, and what
// it writes after that is dropped.
func (o *output) drain(timeout time.Duration) {
	drained := make(chan struct{})
	go func() { o.copies.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(timeout):
		closeAll(o.readers)
		<-drained
	}
	closeAll(o.readers)
}

// abort ends the copies of a worker that did not start; the write ends
// must be closed first.
func (o *output) abort() {
	closeAll(o.readers)
	o.copies.Wait()
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			_ = f.Close()
		}
	}
}

// workerStatus is the worker's wait status as the reaper saw it, and
// whether the reaper fenced it.
func (p *Process) workerStatus() (ws syscall.WaitStatus, fenced, ok bool) {
	if p.status == nil {
		return 0, false, false
	}
	defer p.statusFile.Close()
	for {
		line, err := p.status.ReadString('\n')
		if err != nil {
			return 0, fenced, false
		}
		line = strings.TrimSpace(line)
		if line == "fenced" {
			fenced = true
			continue
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(line, "exit "), 10, 32)
		if err != nil {
			return 0, fenced, false
		}
		return syscall.WaitStatus(n), fenced, true
	}
}

func (p *Process) wait(out *output) {
	defer close(p.done)
	err := p.cmd.Wait()
	exit := Exit{Code: -1, Time: time.Now()}
	p.mu.Lock()
	// Whether rtrain ended it is decided now, not after the output drains:
	// a Stop that comes later did not cause this exit.
	exit.Stopped = p.stopping
	p.mu.Unlock()
	ws, fenced, ok := p.workerStatus()
	exit.Fenced = fenced
	if !ok {
		var ee *exec.ExitError
		switch {
		case err == nil:
			ok = true
		case errors.As(err, &ee):
			ws, ok = ee.Sys().(syscall.WaitStatus)
		}
	}
	switch {
	case !ok:
	case ws.Signaled():
		exit.Signal = ws.Signal()
	default:
		exit.Code = ws.ExitStatus()
	}
	if p.group != nil && p.memoryLimit > 0 {
		// Read before Reap deletes the group. A stats error only costs the
		// diagnosis, never the exit.
		if st, err := p.group.Stats(); err == nil {
			exit.OOMKills, exit.MemoryLimit = st.OOMKills, p.memoryLimit
		}
	}
	out.drain(drainTimeout)
	p.mu.Lock()
	p.exit = exit
	p.mu.Unlock()
}

// Pid is the worker's process id.
func (p *Process) Pid() int { return p.pid }

// pgid is the worker's process group: the reaper's pid when there is one.
func (p *Process) pgid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and its output is drained.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exit is how the process ended; valid once Done is closed.
func (p *Process) Exit() Exit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

// Signal sends sig to the process's whole group.
func (p *Process) Signal(sig syscall.Signal) error {
	err := syscall.Kill(-p.pgid(), sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("launcher: signal %s to group %d: %w", sig, p.pgid(), err)
	}
	return nil
}

// Stop ends the process group and every descendant of the worker, those
// that left the group with setsid too: SIGTERM, then SIGKILL after grace or
// when ctx is done, whichever comes first. It returns once the process has
// exited.
func (p *Process) Stop(ctx context.Context, grace time.Duration) {
	p.mu.Lock()
	first := !p.stopping
	p.stopping = true
	p.mu.Unlock()
	var tree []int
	select {
	case <-p.done:
	default:
		// Taken while the worker lives: once it dies its children are
		// re-parented and can no longer be traced to it. The cgroup, where
		// there is one, holds them all the same.
		tree = append(descendants(p.pgid()), p.groupProcs()...)
		if first {
			_ = p.Signal(syscall.SIGTERM)
			signalAll(tree, syscall.SIGTERM)
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	tree = append(tree, descendants(p.pgid())...)
	_ = p.Signal(syscall.SIGKILL)
	signalAll(tree, syscall.SIGKILL)
	_ = p.killGroup()
	<-p.done
}

// Reap kills whatever is left of the worker once it has exited, in its
// process group and in its cgroup, and removes the cgroup: a worker that
// succeeded must not leave children behind. Call it once the process is
// done with (after Stop, or after Done for a worker that exited by itself).
// The error says what could not be cleaned up.
func (p *Process) Reap() error {
	<-p.done
	_ = p.Signal(syscall.SIGKILL)
	if p.group == nil {
		return nil
	}
	return errors.Join(p.killGroup(), p.group.Delete())
}

// groupProcs lists the processes in the worker's cgroup, none without one.
func (p *Process) groupProcs() []int {
	if p.group == nil {
		return nil
	}
	pids, _ := p.group.Procs()
	return pids
}

// killGroup kills every process in the worker's cgroup and waits, within
// killTimeout, until the group is empty.
func (p *Process) killGroup() error {
	if p.group == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	return p.group.Kill(ctx)
}

// deleteGroup removes a group Start made before it failed; nil is none.
func deleteGroup(g *cgroup.Group) error {
	if g == nil {
		return nil
	}
	return g.Delete()
}

// formatLimit prints a byte count the way --memory-per-worker takes it:
// 300M, 2G, or plain bytes when no unit divides it.
func formatLimit(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
