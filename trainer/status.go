package trainer

import (
	"time"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/sched"
)

// ClusterStatus is a cluster as its head sees it: the nodes and the jobs,
// as `rtrain status` shows them. The JSON names follow `rtrain status -o
// json`'s where they mean the same; durations are in nanoseconds.
type ClusterStatus struct {
	// Version is the head's rtrain version.
	Version string `json:"version"`
	// HeartbeatTimeout is how long a node may go without a heartbeat
	// before the head declares it dead.
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout_ns"`
	// Nodes are sorted by id.
	Nodes []NodeStatus `json:"nodes"`
	// Jobs are every job the head keeps, oldest first.
	Jobs []JobSummary `json:"jobs"`
	// Role is the answering head's: "active", or "standby" (it shows no
	// nodes or jobs); Heads are a cluster's heads with standbys, the
	// active one first, none for a single head.
	Role  string       `json:"role,omitempty"`
	Heads []HeadStatus `json:"heads,omitempty"`
}

// HeadStatus is one head of a cluster with standbys.
type HeadStatus struct {
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Leader bool   `json:"leader"`
}

// The states of a node in NodeStatus.State.
const (
	NodeAlive   = "alive"
	NodeDead    = "dead"    // no heartbeat within the timeout: its workers are lost
	NodeDrained = "drained" // taken out with notice: its workers moved
)

// NodeStatus is one node of a cluster.
type NodeStatus struct {
	// Node is the node as it registered: its id, addresses and total
	// resources.
	Node sched.Node `json:"node"`
	// Free is what of Node.Total no job holds. A custom resource used up
	// is absent from Free.Custom, not 0.
	Free sched.Resources `json:"free"`
	// FreeGPUs are the indices of the GPUs no job holds.
	FreeGPUs []int `json:"gpus_free"`
	// State is NodeAlive, NodeDead or NodeDrained.
	State string `json:"state"`
	// HeartbeatAge is the time since the node's last heartbeat.
	HeartbeatAge time.Duration `json:"heartbeat_age_ns"`
	// GPUStats are the GPUs' use from the last heartbeat; none for a node
	// without NVML, or one that is not alive.
	GPUStats []discover.GPUStat `json:"gpu_stats,omitempty"`
}

// JobSummary is one job of a cluster, as `rtrain jobs` lists it. The JSON
// names are `rtrain jobs -o json`'s.
type JobSummary struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// State is the job's state now.
	State State `json:"state"`
	// Message says why a pending job waits, or how a finished one ended.
	Message string `json:"message,omitempty"`
	// Workers is the number of ranks.
	Workers   int       `json:"workers"`
	Submitted time.Time `json:"submitted"`
	// Ended is zero while the job runs.
	Ended time.Time `json:"ended,omitzero"`
	// Attempts is 1, plus one per restart.
	Attempts int `json:"attempts"`
	// Queued: the scheduler holds the job, waiting for resources, for
	// Reason (one line; Message says it too, for people). A program
	// branches on these, not on the message.
	Queued bool   `json:"queued,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Group is Config.Group: the sweep the job is a trial of, say.
	Group string `json:"group,omitempty"`
	// Params, Metric and Mode are Config's: the trial's hyperparameters,
	// and the metric its sweep judges it by.
	Params map[string]string `json:"params,omitempty"`
	Metric string            `json:"metric,omitempty"`
	Mode   string            `json:"mode,omitempty"`
	// Best is the best value of Metric among rank 0's reports so far, the
	// lowest or the highest as Mode says, and BestIteration the report it
	// came at (1 for rank 0's first: Ray Tune's training_iteration). Best
	// is nil, and BestIteration 0, until a report has Metric as a number.
	Best          *float64 `json:"best,omitempty"`
	BestIteration int      `json:"best_iteration,omitempty"`
}

// StatusFromProto is the cluster status a head sends, as Go values.
func StatusFromProto(p *clusterpb.StatusReply) ClusterStatus {
	st := ClusterStatus{
		Version:          p.GetVersion(),
		HeartbeatTimeout: time.Duration(p.GetHeartbeatTimeoutMs()) * time.Millisecond,
		Nodes:            make([]NodeStatus, 0, len(p.GetNodes())),
		Jobs:             jobsFromProto(p.GetJobs()),
		Role:             p.GetRole(),
	}
	for _, h := range p.GetHeads() {
		st.Heads = append(st.Heads, HeadStatus{ID: h.GetId(), Addr: h.GetAddr(), Leader: h.GetLeader()})
	}
	for _, n := range p.GetNodes() {
		ns := NodeStatus{
			Node:         cluster.NodeFromProto(n.GetNode()),
			Free:         cluster.ResourcesFromProto(n.GetFree()),
			State:        n.GetState(),
			HeartbeatAge: time.Duration(n.GetHeartbeatAgeMs()) * time.Millisecond,
		}
		for _, g := range n.GetFreeGpus() {
			ns.FreeGPUs = append(ns.FreeGPUs, int(g))
		}
		for _, g := range n.GetGpuStats() {
			ns.GPUStats = append(ns.GPUStats, discover.GPUStat{Index: int(g.GetIndex()), Utilization: g.GetUtilization(),
				MemoryUsed: g.GetMemoryUsedBytes(), MemoryTotal: g.GetMemoryTotalBytes()})
		}
		st.Nodes = append(st.Nodes, ns)
	}
	return st
}

func jobsFromProto(js []*clusterpb.JobSummary) []JobSummary {
	out := make([]JobSummary, 0, len(js))
	for _, j := range js {
		out = append(out, JobSummary{
			ID: j.GetId(), Name: j.GetName(), State: State(j.GetState()), Message: j.GetMessage(),
			Workers: int(j.GetWorkers()), Submitted: unixMilli(j.GetSubmittedUnixMs()), Ended: unixMilli(j.GetEndedUnixMs()),
			Attempts: int(j.GetAttempts()), Queued: j.GetQueued(), Reason: j.GetReason(), Group: j.GetGroup(),
			Params: j.GetParams(), Metric: j.GetMetric(), Mode: j.GetMode(), Best: j.Best, BestIteration: int(j.GetBestIteration()),
		})
	}
	return out
}

// unixMilli is ms as a time; 0 is the zero time, as on the wire.
func unixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
