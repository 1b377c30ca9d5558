package rendezvous

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalidLayout is wrapped by every error Layout.Validate returns.
var ErrInvalidLayout = errors.New("rendezvous: invalid layout")

// Layout describes one attempt of a job: where rank 0 listens and how many
// workers run on each node. Ranks are contiguous per node: node 0 holds ranks
// 0..LocalWorldSizes[0]-1, node 1 the next ones, and so on (torchrun's order).
type Layout struct {
	// RunID is TORCHELASTIC_RUN_ID; it must be the same on every node.
	RunID string
	// MasterAddr and MasterPort are where rank 0's TCPStore listens.
	MasterAddr string
	MasterPort int
	// LocalWorldSizes holds the number of workers on each node, in node-rank
	// order. The world size is their sum.
	LocalWorldSizes []int
	// RestartCount is the attempt number, 0 for the first attempt.
	RestartCount int
	// MaxRestarts is the job's restart budget; -1 means unlimited.
	MaxRestarts int
	// Role is ROLE_NAME; empty means "default", as in torchrun.
	Role string
	// ThreadsPerWorker is OMP_NUM_THREADS when the user has not set it; 0
	// means 1.
	ThreadsPerWorker int
	// LegacyNCCLEnv selects NCCL_ASYNC_ERROR_HANDLING, the name torch before
	// 2.2 reads, instead of TORCH_NCCL_ASYNC_ERROR_HANDLING.
	LegacyNCCLEnv bool
	// AgentStore says the TCPStore at MasterAddr:MasterPort is the agent's,
	// listening before any worker starts: every rank, rank 0 included,
	// joins it as a client (TORCHELASTIC_USE_AGENT_STORE=True, as under
	// torchrun). Otherwise rank 0 hosts it.
	AgentStore bool
}

// WorldSize is the total number of workers across nodes.
func (l Layout) WorldSize() int {
	n := 0
	for _, s := range l.LocalWorldSizes {
		n += s
	}
	return n
}

// Validate reports the first thing that makes the layout unusable.
func (l Layout) Validate() error {
	switch {
	case l.MasterAddr == "":
		return fmt.Errorf("%w: no master address", ErrInvalidLayout)
	case l.MasterPort <= 0 || l.MasterPort > 65535:
		return fmt.Errorf("%w: master port %d out of range", ErrInvalidLayout, l.MasterPort)
	case len(l.LocalWorldSizes) == 0:
		return fmt.Errorf("%w: no nodes", ErrInvalidLayout)
	case l.RunID == "":
		return fmt.Errorf("%w: no run id", ErrInvalidLayout)
	}
	for i, s := range l.LocalWorldSizes {
		if s <= 0 {
			return fmt.Errorf("%w: node %d has %d workers", ErrInvalidLayout, i, s)
		}
	}
	return nil
}

// Rank returns the global rank of the worker with localRank on nodeRank.
func (l Layout) Rank(nodeRank, localRank int) int {
	r := localRank
	for _, s := range l.LocalWorldSizes[:nodeRank] {
		r += s
	}
	return r
}

// WorkerEnv returns the torchrun variables for one worker. base is the
// environment the worker would otherwise inherit; variables the user set there
// that torchrun also leaves alone (OMP_NUM_THREADS, the NCCL error handling
// switch) are kept, every rendezvous variable is overwritten. The result is
// base with the contract applied, sorted, in os/exec's KEY=VALUE form.
func (l Layout) WorkerEnv(base []string, nodeRank, localRank int) ([]string, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if nodeRank < 0 || nodeRank >= len(l.LocalWorldSizes) {
		return nil, fmt.Errorf("%w: node rank %d of %d nodes", ErrInvalidLayout, nodeRank, len(l.LocalWorldSizes))
	}
	if localRank < 0 || localRank >= l.LocalWorldSizes[nodeRank] {
		return nil, fmt.Errorf("%w: local rank %d of %d on node %d", ErrInvalidLayout, localRank, l.LocalWorldSizes[nodeRank], nodeRank)
	}
	env := ParseEnv(base)
	// A script that inherits these from a parent torchrun must not see them.
	delete(env, "TORCHELASTIC_USE_AGENT_STORE")
	delete(env, "TORCHELASTIC_ERROR_FILE")

	role := l.Role
	if role == "" {
		role = "default"
	}
	rank := l.Rank(nodeRank, localRank)
	world := l.WorldSize()
	set := func(k string, v int) { env[k] = strconv.Itoa(v) }
	env["MASTER_ADDR"] = l.MasterAddr
	set("MASTER_PORT", l.MasterPort)
	set("RANK", rank)
	set("LOCAL_RANK", localRank)
	set("WORLD_SIZE", world)
	set("LOCAL_WORLD_SIZE", l.LocalWorldSizes[nodeRank])
	set("GROUP_RANK", nodeRank)
	set("GROUP_WORLD_SIZE", len(l.LocalWorldSizes))
	set("NODE_RANK", nodeRank)
	// One role: the role ranks are the global ranks, as torchrun sets them.
	set("ROLE_RANK", rank)
	set("ROLE_WORLD_SIZE", world)
	env["ROLE_NAME"] = role
	env["TORCHELASTIC_RUN_ID"] = l.RunID
	if l.AgentStore {
		env["TORCHELASTIC_USE_AGENT_STORE"] = "True"
	}
	set("TORCHELASTIC_RESTART_COUNT", l.RestartCount)
	set("TORCHELASTIC_MAX_RESTARTS", l.MaxRestarts)
	if _, ok := env["OMP_NUM_THREADS"]; !ok {
		set("OMP_NUM_THREADS", max(l.ThreadsPerWorker, 1))
	}
	_, modern := env["TORCH_NCCL_ASYNC_ERROR_HANDLING"]
	_, legacy := env["NCCL_ASYNC_ERROR_HANDLING"]
	if !modern && !legacy {
		if l.LegacyNCCLEnv {
			env["NCCL_ASYNC_ERROR_HANDLING"] = "1"
		} else {
			env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "1"
		}
	}
	return FormatEnv(env), nil
}

// ParseEnv turns os.Environ-style entries into a map; later entries win, as
// they do for exec.
func ParseEnv(kv []string) map[string]string {
	m := make(map[string]string, len(kv))
	for _, e := range kv {
		k, v, ok := strings.Cut(e, "=")
		if ok && k != "" {
			m[k] = v
		}
	}
	return m
}

// FormatEnv turns a map into sorted KEY=VALUE entries.
func FormatEnv(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// LegacyNCCL reports whether a torch version string (torch.__version__, e.g.
// "1.13.0a0" or "2.3.1+cu121") predates 2.2, the release that renamed
// NCCL_ASYNC_ERROR_HANDLING. An unparsable version counts as modern.
func LegacyNCCL(torchVersion string) bool {
	major, minor, ok := torchMajorMinor(torchVersion)
	return ok && (major < 2 || (major == 2 && minor < 2))
}

// AgentStoreSupported reports whether rtrain's TCPStore (package
// rendezvous/store) speaks the store protocol of this torch version: the
// 1.x one, which TORCHELASTIC_USE_AGENT_STORE reaches from 1.9 on. Torch
// 2.x clients validate the server with a handshake the store does not
// answer; their rank 0 hosts the store instead.
func AgentStoreSupported(torchVersion string) bool {
	major, minor, ok := torchMajorMinor(torchVersion)
	return ok && major == 1 && minor >= 9
}

func torchMajorMinor(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimLeftFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return major, minor, true
}
