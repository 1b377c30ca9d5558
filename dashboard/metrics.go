package dashboard

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtrain/rtrain/trainer"
)

// jobStates are the values of rtrain_jobs' state label, every one present
// even at 0 so that a query over them never finds a gap.
var jobStates = []trainer.State{trainer.StatePending, trainer.StateStarting, trainer.StateRunning,
	trainer.StateSucceeded, trainer.StateFailed, trainer.StateCancelled, trainer.StateLost}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("rtrain_"+name, help, labels, nil)
}

// The metrics, read from the Source at scrape time. Totals (_total) are
// summed over every job the head keeps.
var (
	descNodes      = desc("nodes", "Nodes registered with the head, by state (alive or dead).", "state")
	descHeartbeat  = desc("node_heartbeat_age_seconds", "Time since the node's last heartbeat.", "node")
	descCPUs       = desc("cpus", "CPUs of the alive nodes.")
	descCPUsFree   = desc("cpus_free", "CPUs of the alive nodes that no job holds.")
	descGPUs       = desc("gpus", "GPUs of the alive nodes.")
	descGPUsFree   = desc("gpus_free", "GPUs of the alive nodes that no job holds.")
	descMem        = desc("memory_bytes", "Memory of the alive nodes.")
	descMemFree    = desc("memory_free_bytes", "Memory of the alive nodes that no job holds.")
	descCustom     = desc("custom_resource", "Custom resources of the alive nodes (rtrain start --resources), by name.", "resource")
	descCustomFree = desc("custom_resource_free", "Custom resources of the alive nodes that no job holds, by name.", "resource")
	descJobs       = desc("jobs", "Jobs the head knows, by state.", "state")
	descPending    = desc("scheduler_pending_jobs", "Jobs queued by the scheduler, waiting for resources.")
	descReports    = desc("reports_total", "Calls of rtrain.report(), every rank's.")
	descCkpts      = desc("checkpoints_total", "Checkpoints committed to storage.")
	descCkptBytes  = desc("checkpoint_bytes_total", "Bytes of the checkpoints committed to storage.")
	descCkptUpload = desc("checkpoint_upload_seconds_total", "Time spent storing checkpoints, from the last rank's report to the manifest.")
	descExits      = desc("worker_exits_total", "Worker processes that ended, by outcome: success, failed, oom, stopped (by rtrain), lost (node gone), preempted (node drained).", "outcome")
	descRestarts   = desc("restarts_total", "Times a job's workers were restarted: after a failure (Config.MaxFailures), a preemption, or to scale an elastic job up.")
	descGPUUtil    = desc("gpu_utilization_ratio", "How busy each GPU was over NVML's last sample period, 0 to 1, from its node's last heartbeat.", "node", "gpu")
	descGPUMem     = desc("gpu_memory_used_bytes", "Memory in use on each GPU, from its node's last heartbeat.", "node", "gpu")
	descGPUMemTot  = desc("gpu_memory_bytes", "Memory of each GPU, from its node's last heartbeat.", "node", "gpu")
	descLeader     = desc("head_leader", "1 while this head is the active one, 0 while it stands by (rtrain start --head --store); a single head is always 1.")
)

// collector reads the cluster and the jobs' events at each scrape.
type collector struct{ t *tracker }

var _ prometheus.Collector = collector{}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodes, descHeartbeat, descCPUs, descCPUsFree, descGPUs, descGPUsFree,
		descMem, descMemFree, descCustom, descCustomFree, descJobs, descPending, descReports, descCkpts, descCkptBytes, descCkptUpload,
		descExits, descRestarts, descGPUUtil, descGPUMem, descGPUMemTot, descLeader} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	st := c.t.src.Status()
	leader := 1.0
	if st.Role == "standby" {
		leader = 0
	}
	gauge(descLeader, leader)

	var alive, dead int
	var cpus, cpusFree float64
	var gpus, gpusFree, mem, memFree int64
	custom, customFree := map[string]float64{}, map[string]float64{}
	for _, n := range st.Nodes {
		gauge(descHeartbeat, n.HeartbeatAge.Seconds(), n.Node.ID)
		if n.State != trainer.NodeAlive {
			dead++
			continue
		}
		alive++
		for _, g := range n.GPUStats {
			gpu := strconv.Itoa(g.Index)
			if g.Utilization >= 0 {
				gauge(descGPUUtil, g.Utilization, n.Node.ID, gpu)
			}
			if g.MemoryTotal > 0 {
				gauge(descGPUMem, float64(g.MemoryUsed), n.Node.ID, gpu)
				gauge(descGPUMemTot, float64(g.MemoryTotal), n.Node.ID, gpu)
			}
		}
		total, free := n.Node.Total, n.Free
		cpus += total.CPU
		cpusFree += free.CPU
		gpus += int64(total.GPU)
		gpusFree += int64(free.GPU)
		mem += total.MemoryBytes
		memFree += free.MemoryBytes
		f := free.Custom.Map()
		for name, q := range total.Custom.Map() {
			custom[name] += q
			customFree[name] += f[name]
		}
	}
	for name, q := range custom {
		gauge(descCustom, q, name)
		gauge(descCustomFree, customFree[name], name)
	}
	gauge(descNodes, float64(alive), "alive")
	gauge(descNodes, float64(dead), "dead")
	gauge(descCPUs, cpus)
	gauge(descCPUsFree, cpusFree)
	gauge(descGPUs, float64(gpus))
	gauge(descGPUsFree, float64(gpusFree))
	gauge(descMem, float64(mem))
	gauge(descMemFree, float64(memFree))

	byState := map[trainer.State]int{}
	pending := 0
	var reports, ckpts, restarts int
	var ckptBytes int64
	var ckptSeconds float64
	exits := map[string]int{}
	keep := map[string]bool{}
	for _, s := range st.Jobs {
		byState[s.State]++
		if s.Queued {
			pending++
		}
		keep[s.ID] = true
		c.t.job(s.ID, func(j *jobState) {
			reports += j.reports
			ckpts += len(j.ckpts)
			ckptBytes += j.ckptBytes
			ckptSeconds += j.ckptSeconds
			restarts += j.restarts
			for o, n := range j.exits {
				exits[o] += n
			}
		})
	}
	c.t.forget(keep)
	for _, s := range jobStates {
		gauge(descJobs, float64(byState[s]), string(s))
	}
	gauge(descPending, float64(pending))
	counter(descReports, float64(reports))
	counter(descCkpts, float64(ckpts))
	counter(descCkptBytes, float64(ckptBytes))
	counter(descCkptUpload, ckptSeconds)
	for _, o := range outcomes {
		counter(descExits, float64(exits[o]), o)
	}
	counter(descRestarts, float64(restarts))
}
