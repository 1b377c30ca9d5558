package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/cgroups/v3/cgroup1"
)

// Stats is what the kernel counted for a group, for reporting a worker's
// end: above all, whether it died because it hit its memory limit. A
// counter the host does not keep reads 0.
type Stats struct {
	// MemoryBytes is the memory charged to the group now.
	MemoryBytes int64
	// MemoryPeakBytes is the most it was ever charged (v1
	// memory.max_usage_in_bytes, v2 memory.peak).
	MemoryPeakBytes int64
	// MemoryLimitHits counts the times a charge met the memory limit (v1
	// memory.failcnt plus memory.memsw.failcnt, v2 the "max" of
	// memory.events); the kernel reclaims first, so hits do not all end in
	// an OOM kill. Some kernels leave the v1 counters at 0 once swap is
	// capped (Linux 6.18 does): OOMKills is the one to trust.
	MemoryLimitHits int64
	// OOMKills counts the processes the OOM killer killed in the group
	// because of its limit (oom_kill in memory.oom_control or
	// memory.events). Above 0, a worker that died of SIGKILL was most
	// likely out of memory.
	OOMKills int64
	// Pids is the number of tasks (threads included) by the pids
	// controller, or of processes where there is no pids controller.
	Pids int64
	// PidsLimitHits counts the forks refused by the pids limit.
	PidsLimitHits int64
}

// Stats reads the group's counters. They stay readable after its
// processes are gone, until Delete.
func (g *Group) Stats() (Stats, error) {
	var (
		s Stats
		r statReader
		l = g.layout
	)
	switch l.memory {
	case onV1:
		dir := l.v1Dir(cgroup1.Memory, g.name)
		s.MemoryBytes = r.int(dir, "memory.usage_in_bytes")
		s.MemoryPeakBytes = r.int(dir, "memory.max_usage_in_bytes")
		// With swap capped at the memory limit, the memory+swap counter is
		// charged first and is the one that fails: count both.
		s.MemoryLimitHits = r.int(dir, "memory.failcnt") + r.int(dir, "memory.memsw.failcnt")
		s.OOMKills = r.key(dir, "memory.oom_control", "oom_kill")
	case onV2:
		dir := filepath.Join(l.v2Root, g.name)
		s.MemoryBytes = r.int(dir, "memory.current")
		s.MemoryPeakBytes = r.int(dir, "memory.peak")
		s.MemoryLimitHits = r.key(dir, "memory.events", "max")
		s.OOMKills = r.key(dir, "memory.events", "oom_kill")
	}
	switch l.pids {
	case onV1, onV2:
		dir := filepath.Join(l.v2Root, g.name)
		if l.pids == onV1 {
			dir = l.v1Dir(cgroup1.Pids, g.name)
		}
		s.Pids = r.int(dir, "pids.current")
		s.PidsLimitHits = r.key(dir, "pids.events", "max")
	default:
		procs, err := g.procs()
		s.Pids, r.err = int64(len(procs)), errors.Join(r.err, err)
	}
	if r.err != nil {
		return Stats{}, fmt.Errorf("cgroup: stats of %s: %w", g.name, r.err)
	}
	return s, nil
}

// statReader reads counters and keeps the first error, so that a run of
// reads is checked once. A file the kernel does not have (memory.peak
// before Linux 5.19, say) reads 0.
type statReader struct{ err error }

func (r *statReader) read(dir, file string) []byte {
	if r.err != nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.err = err
	}
	return b
}

func (r *statReader) parse(dir, file string, b []byte) int64 {
	if len(b) == 0 || r.err != nil {
		return 0
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		r.err = fmt.Errorf("%s/%s: %w", dir, file, err)
	}
	return n
}

// int reads a file that holds one number.
func (r *statReader) int(dir, file string) int64 {
	return r.parse(dir, file, bytes.TrimSpace(r.read(dir, file)))
}

// key reads the number after key in a file of "key value" lines; a missing
// key reads 0.
func (r *statReader) key(dir, file, key string) int64 {
	for line := range bytes.Lines(r.read(dir, file)) {
		if k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte(" ")); ok && string(k) == key {
			return r.parse(dir, file, v)
		}
	}
	return 0
}
