// Package cgroup puts each training worker, and everything it spawns, in a
// control group of its own, so that the kernel enforces the worker's limits
// (memory, CPU, pids, GPU devices) and rtrain can always find and kill the
// whole tree, a grandchild that called setsid and ignores SIGTERM included.
//
// It works on the three layouts Linux hosts have: cgroup v2 alone
// (unified), cgroup v1 alone (legacy), and hybrid hosts where the v1
// controllers are mounted under /sys/fs/cgroup/<controller> and an empty
// cgroup2 hierarchy under /sys/fs/cgroup/unified. Detect says which is here;
// New picks, for each limit, the hierarchy whose controller can enforce it
// (on hybrid hosts memory, cpu and pids come from v1, since the cgroup2 there
// has none of them). Device rules use the v1 devices controller where it is
// mounted and an eBPF device program on the cgroup2 directory otherwise.
// A group spans every hierarchy it uses: the same relative name under each.
//
// The lifecycle: New creates the directories and writes the limits; a
// helper process (the re-executed rtrain binary) calls Join with Group.Path
// before it execs the worker, so every descendant is born inside; Kill
// kills everything in the group; Delete removes the directories.
//
// All of it needs root (or a delegated hierarchy) and a writable cgroup
// filesystem. Where there is none, Detect and New fail with ErrUnavailable
// and the caller runs workers without isolation.
package cgroup
