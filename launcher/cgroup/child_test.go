package cgroup

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as every process the tests put in a group
// (Nomad's pattern): started with childEnv set, TestMain plays the role it
// names instead of running tests, so the tests need nothing installed.
const (
	// childEnv names the role.
	childEnv = "CGROUP_TEST_CHILD"
	// joinEnv is the group a child joins before anything else; it is
	// unset before the child spawns, so that its descendants are in the
	// group only by inheritance.
	joinEnv = "CGROUP_TEST_JOIN"
	// variantEnv names the layout variant (see variant) the child joins
	// under; empty is the detected layout.
	variantEnv = "CGROUP_TEST_VARIANT"
)

// runChild plays role with args and returns the exit code. Roles:
//
//	node DEPTH SETSID EXIT  print "pid N"; with SETSID 1, first call
//	                        setsid and ignore SIGTERM and SIGHUP; start a
//	                        node DEPTH-1 1 0 child when DEPTH > 0; then exit
//	                        with EXIT 1, or else wait for stdin to close
//	                        (the top) or forever (descendants).
//	open PATH...            print "PATH ERRNO" for an open of each.
//	oom BYTES               allocate and touch BYTES; exit 3 if not killed.
//	fork                    fork children that pause until a fork fails, print
//	                        "forked N errno E", then wait for stdin to close.
func runChild(role string, args []string) int {
	if path := os.Getenv(joinEnv); path != "" {
		if err := joinVariant(os.Getenv(variantEnv), path); err != nil {
			fmt.Fprintln(os.Stderr, "join:", err)
			return 120
		}
		_ = os.Unsetenv(joinEnv)
	}
	switch role {
	case "node":
		return node(args)
	case "open":
		for _, p := range args {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				_ = unix.Close(fd)
			}
			errno, _ := err.(syscall.Errno)
			fmt.Printf("%s %d\n", p, int(errno))
		}
		return 0
	case "oom":
		n, _ := strconv.ParseInt(args[0], 10, 64)
		return oom(n)
	case "fork":
		return forkUntilRefused()
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 121
}

func joinVariant(name, path string) error {
	l, err := detect()
	if err != nil {
		return err
	}
	l, ok := variant(l, name)
	if !ok {
		return fmt.Errorf("variant %q not on this host", name)
	}
	return join(l, path)
}

func node(args []string) int {
	depth, _ := strconv.Atoi(args[0])
	if args[1] == "1" {
		if _, err := unix.Setsid(); err != nil {
			fmt.Fprintln(os.Stderr, "setsid:", err)
			return 122
		}
		signal.Ignore(syscall.SIGTERM, syscall.SIGHUP)
	}
	fmt.Printf("pid %d\n", os.Getpid())
	if depth > 0 {
		cmd := exec.Command(os.Args[0], strconv.Itoa(depth-1), "1", "0")
		cmd.Env = os.Environ()
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr // files: no copying goroutine
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "start:", err)
			return 123
		}
	}
	if args[2] == "1" {
		return 0
	}
	if args[1] == "1" {
		for { // a descendant: its stdin is /dev/null
			time.Sleep(time.Hour)
		}
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// sink keeps oom's memory reachable, so the collector cannot free it.
var sink [][]byte

func oom(n int64) int {
	const chunk = 16 << 20
	for total := int64(0); total < n; total += chunk {
		b := make([]byte, chunk)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // touch every page, so it is charged
		}
		sink = append(sink, b)
	}
	return 3
}

func forkUntilRefused() int {
	n := 0
	var errno syscall.Errno
	for {
		if errno = forkPause(); errno != 0 {
			break
		}
		n++
	}
	fmt.Printf("forked %d errno %d\n", n, int(errno))
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// forkPause forks a child that does nothing but wait for a signal. It is a
// raw clone, not os/exec: a Go child would need threads of its own, and
// under a pids limit the runtime dies when it cannot make one. The loop
// that calls it allocates nothing, so the Go runtime needs no new thread
// either while the limit is near.
//
//go:norace
//go:nosplit
func forkPause() syscall.Errno {
	pid, _, errno := syscall.RawSyscall(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0)
	if errno != 0 {
		return errno
	}
	if pid == 0 {
		for {
			// ppoll on no descriptors without a timeout: sleep until killed.
			syscall.RawSyscall6(syscall.SYS_PPOLL, 0, 0, 0, 0, 0, 0)
		}
	}
	return 0
}
