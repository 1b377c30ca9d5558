package launcher

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rtrain/rtrain/launcher/cgroup"
)

// reaperEnv carries the launching process's pid to the reaper; its presence
// is what makes RunReaperIfAsked act.
const reaperEnv = "RTRAIN_REAPER_PARENT"

// reaperCgroupEnv names the worker's cgroup (cgroup.Group.Path) for the
// reaper, which kills and removes it should the launcher die.
const reaperCgroupEnv = "RTRAIN_REAPER_CGROUP"

// joinEnv asks this binary, started by the reaper, to enter the cgroup it
// names and exec the worker in its place: the worker is born inside, with
// the pid the reaper started, while the reaper itself stays outside and so
// can empty and remove the group.
const joinEnv = "RTRAIN_CGROUP_JOIN"

// statusFD is the reaper's end of the status pipe (the launcher's first
// ExtraFiles entry).
const statusFD = 3

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
const prSetChildSubreaper = 36

var reaperAvailable atomic.Bool

// RunReaperIfAsked must be the first thing main (and TestMain of packages
// that launch workers) does. When this process was started as a worker's
// reaper it runs the reaper and exits; otherwise it records that the reaper
// is available and returns false.
//
// The reaper is this same binary, re-executed between the launcher and the
// worker (moby's reexec pattern). It makes itself the child subreaper of
// everything the worker spawns, so that nothing escapes it, and it dies
// with the launcher: if rtrain is killed, even with SIGKILL, the kernel
// tells the reaper (parent-death signal), and the reaper kills the worker
// and every descendant, those that called setsid included. When the worker
// exits by itself, whatever it left running is killed, and the reaper exits
// the way the worker did (same code, same signal).
func RunReaperIfAsked() bool {
	if path := os.Getenv(joinEnv); path != "" {
		os.Exit(joinAndExec(path, os.Args[1:]))
	}
	parent := os.Getenv(reaperEnv)
	if parent == "" {
		reaperAvailable.Store(true)
		return false
	}
	os.Exit(reap(parent, os.Args[1:]))
	return true
}

// ReaperAvailable reports whether Start will run workers under the reaper.
func ReaperAvailable() bool { return reaperAvailable.Load() }

// joinAndExec enters cgroup path and replaces this process with argv. It
// returns only on failure, with the exit status for it.
func joinAndExec(path string, argv []string) int {
	_ = os.Unsetenv(joinEnv)
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "rtrain: no command to run in the cgroup")
		return 127
	}
	if err := cgroup.Join(path); err != nil {
		fmt.Fprintf(os.Stderr, "rtrain: cannot put the worker in its cgroup: %v\n", err)
		return 127
	}
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintf(os.Stderr, "rtrain: cannot start %s: %v\n", argv[0], err)
	return 127
}

func reap(parent string, argv []string) int {
	// The worker and whatever it runs must not become reapers themselves.
	_ = os.Unsetenv(reaperEnv)
	groupPath := os.Getenv(reaperCgroupEnv)
	_ = os.Unsetenv(reaperCgroupEnv)
	leasePath := os.Getenv(leaseEnv)
	_ = os.Unsetenv(leaseEnv)
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "rtrain reaper: no command")
		return 127
	}
	// Parent-death signal set by the launcher; a dedicated handler below.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	if strconv.Itoa(os.Getppid()) != parent {
		return 1 // the launcher died before we could watch it
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		fmt.Fprintf(os.Stderr, "rtrain reaper: PR_SET_CHILD_SUBREAPER: %v\n", errno)
	}
	// The launcher reads the worker's pid and, at the end, its raw wait
	// status here: the reaper cannot die of the worker's signal itself (the
	// Go runtime turns SIGSEGV into a crash report and ignores SIGUSR1).
	status := os.NewFile(statusFD, "status")
	path, env := argv[0], os.Environ()
	if groupPath != "" {
		// This binary again, which enters the group and execs the worker.
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintf(os.Stderr, "rtrain reaper: find own binary: %v\n", err)
			return 127
		}
		path, argv, env = self, append([]string{self}, argv...), append(env, joinEnv+"="+groupPath)
	}
	proc, err := os.StartProcess(path, argv, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "rtrain: cannot start %s: %v\n", argv[0], err)
		return 127
	}
	main := proc.Pid
	if status != nil {
		fmt.Fprintf(status, "pid %d\n", main)
	}

	// One goroutine reaps every child, the worker and re-parented orphans
	// alike; Wait4(-1) and os.Process.Wait must not be mixed.
	exited := make(chan syscall.WaitStatus, 1)
	go func() {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, 0, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return // ECHILD: nothing left
			}
			if pid == main {
				exited <- ws
			}
		}
	}()

	lapsed, stopWatch := make(chan struct{}), make(chan struct{})
	defer close(stopWatch)
	if leasePath != "" {
		go watchLease(leasePath, stopWatch, lapsed)
	}
	var ws syscall.WaitStatus
	for done := false; !done; {
		select {
		case ws = <-exited:
			done = true
		case <-lapsed:
			// The head moves this rank once the lease is over: the worker
			// goes now, without the grace a stop gives, and the launcher
			// learns why should its agent come back.
			lapsed = nil
			if status != nil {
				fmt.Fprintln(status, "fenced")
			}
			killTree(os.Getpid())
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				// The launcher is gone: nobody else will clean up.
				killTree(os.Getpid())
				if groupPath != "" {
					removeGroup(groupPath)
				}
				return 1
			}
			// Other signals reached the whole process group, the worker
			// included; the reaper only must not die of them.
		}
	}
	// Everything the worker spawned is in this tree: we are its subreaper.
	// The launcher reads the cgroup's counters once we exit, then removes it.
	killTree(os.Getpid())
	if status != nil {
		fmt.Fprintf(status, "exit %d\n", uint32(ws))
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// removeGroup kills what is left in the worker's cgroup and removes it,
// for a launcher that died before it could.
func removeGroup(path string) {
	g, err := cgroup.Load(path)
	if err != nil {
		return // never made, or already removed
	}
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	if err := g.Kill(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "rtrain reaper: %v\n", err)
		return
	}
	if err := g.Delete(); err != nil {
		fmt.Fprintf(os.Stderr, "rtrain reaper: %v\n", err)
	}
}

// killTree SIGKILLs every descendant of pid until none is left. New ones can
// appear while it works (a fork racing the kill), hence the loop; it gives up
// after a bounded number of rounds.
func killTree(pid int) {
	for range 50 {
		tree := descendants(pid)
		if len(tree) == 0 {
			return
		}
		signalAll(tree, syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
	}
}
