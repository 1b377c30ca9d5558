package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/trainer"
)

func newStopCmd() *cobra.Command {
	o := &clusterFlags{}
	var wait time.Duration
	var group string
	cmd := &cobra.Command{
		Use:   "stop [JOB | --group GROUP]",
		Short: "Stop the head and agent started on this machine, or stop a job",
		Long: `With no argument, stop stops the head and the agent that ` + "`rtrain start`" + `
started on this machine: SIGTERM, and it waits for them to stop their
workers. With a JOB (an id or a run name), it stops that job on the cluster;
with --group, every job of that group that has not ended (a sweep's trials).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if group != "" {
				if len(args) > 0 {
					return usageError{errors.New("give a JOB or --group, not both")}
				}
				return stopGroup(cmd, o, group)
			}
			if len(args) == 1 {
				c, err := o.client()
				if err != nil {
					return err
				}
				defer c.Close()
				if err := c.Stop(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "rtrain: stopping job %s\n", args[0])
				return nil
			}
			return stopDaemons(cmd, o, wait)
		},
	}
	addClusterFlags(cmd.Flags(), o, "the head, "+addressForm+" for every head of a cluster with standbys (for stopping a job)")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for each daemon to stop before SIGKILL")
	cmd.Flags().StringVar(&group, "group", "", "stop every job of this group that has not ended")
	return cmd
}

// stopGroup stops the group's jobs that have not ended.
func stopGroup(cmd *cobra.Command, o *clusterFlags, group string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	defer c.Close()
	stopped, err := c.StopGroup(cmd.Context(), group)
	for _, j := range stopped {
		fmt.Fprintf(cmd.OutOrStdout(), "rtrain: stopping job %s (%s)\n", j.ID, j.Name)
	}
	if err != nil {
		return err
	}
	if len(stopped) == 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "rtrain: no job of group %s runs\n", group)
	}
	return nil
}

func stopDaemons(cmd *cobra.Command, o *clusterFlags, wait time.Duration) error {
	dir, err := o.dir()
	if err != nil {
		return err
	}
	stopped := 0
	// The agent first: its workers end before the head forgets them.
	for _, role := range []string{"agent", "head"} {
		pidPath := filepath.Join(dir, role+".pid")
		pid, ok := livePid(pidPath)
		if !ok {
			_ = os.Remove(pidPath)
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if !waitExit(pid, wait) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			fmt.Fprintf(cmd.ErrOrStderr(), "rtrain: the %s (pid %d) did not stop within %s; killed\n", role, pid, wait)
		}
		_ = os.Remove(pidPath)
		fmt.Fprintf(cmd.OutOrStdout(), "rtrain: stopped the %s (pid %d)\n", role, pid)
		stopped++
	}
	if stopped == 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "rtrain: no head or agent runs here (state in %s)\n", dir)
	}
	return nil
}

type outputFlag struct{ format string }

func (o *outputFlag) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "table", "table or json")
}

func (o *outputFlag) check() error {
	if o.format != "table" && o.format != "json" {
		return usageError{fmt.Errorf("--output %q: want table or json", o.format)}
	}
	return nil
}

// clientFor checks the output format, then connects: a bad flag is said
// before any connection is tried.
func (o *clusterFlags) clientFor(out *outputFlag) (*trainer.Client, error) {
	if err := out.check(); err != nil {
		return nil, err
	}
	return o.client()
}

func newStatusCmd() *cobra.Command {
	o := &clusterFlags{}
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's nodes, their resources, and its jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.clientFor(&out)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			addr := c.Addr()
			// A standby knows no nodes or jobs: the active head does.
			if lead := activeHead(st); st.Role == "standby" && lead != "" && lead != addr {
				if lc, err := o.dialHead(lead); err == nil {
					defer lc.Close()
					if lst, err := lc.Status(cmd.Context()); err == nil {
						st, addr = lst, lead
					}
				}
			}
			if out.format == "json" {
				return writeJSON(cmd.OutOrStdout(), statusJSON(st))
			}
			printStatus(cmd.OutOrStdout(), addr, st)
			return nil
		},
	}
	addClusterFlags(cmd.Flags(), o, "the head, "+addressForm+" for every head of a cluster with standbys (default $"+AddressEnv+", else the head started here)")
	out.add(cmd)
	return cmd
}

type nodeJSON struct {
	ID             string  `json:"id"`
	Addr           string  `json:"addr"`
	State          string  `json:"state"`
	CPUs           float64 `json:"cpus"`
	CPUsFree       float64 `json:"cpus_free"`
	GPUs           int     `json:"gpus"`
	GPUsFree       []int   `json:"gpus_free"`
	Memory         int64   `json:"memory_bytes"`
	MemoryFree     int64   `json:"memory_free_bytes"`
	HeartbeatAgeMS int64   `json:"heartbeat_age_ms"`
	// Resources and ResourcesFree are the custom resources by name.
	Resources     map[string]float64 `json:"resources,omitempty"`
	ResourcesFree map[string]float64 `json:"resources_free,omitempty"`
}

type jobJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	State    string `json:"state"`
	Message  string `json:"message,omitempty"`
	Workers  int    `json:"workers"`
	Attempts int    `json:"attempts"`
	Started  string `json:"submitted"`
	// Queued: the scheduler holds the job, waiting for resources, for
	// Reason; a script branches on these, not on the message.
	Queued bool   `json:"queued,omitempty"`
	Reason string `json:"reason,omitempty"`
	Group  string `json:"group,omitempty"`
	// A sweep's trial: its --param flags, the --metric and --mode it is
	// judged by, and the best value of the metric so far with the report
	// it came at (1-based); no best until a report has the metric.
	Params        map[string]string `json:"params,omitempty"`
	Metric        string            `json:"metric,omitempty"`
	Mode          string            `json:"mode,omitempty"`
	Best          *float64          `json:"best,omitempty"`
	BestIteration int               `json:"best_iteration,omitempty"`
}

func statusJSON(st trainer.ClusterStatus) any {
	nodes := []nodeJSON{}
	for _, n := range st.Nodes {
		total, free := n.Node.Total, n.Free
		nodes = append(nodes, nodeJSON{ID: n.Node.ID, Addr: n.Node.Addr, State: n.State, CPUs: total.CPU, CPUsFree: free.CPU,
			GPUs: total.GPU, GPUsFree: n.FreeGPUs, Memory: total.MemoryBytes, MemoryFree: free.MemoryBytes, HeartbeatAgeMS: n.HeartbeatAge.Milliseconds(),
			Resources: total.Custom.Map(), ResourcesFree: freeCustom(total.Custom, free.Custom)})
	}
	view := map[string]any{"version": st.Version, "nodes": nodes, "jobs": jobsJSON(st.Jobs)}
	if st.Role != "" {
		view["role"] = st.Role
	}
	if len(st.Heads) > 0 {
		view["heads"] = st.Heads
	}
	return view
}

// freeCustom is free by name for every resource of total, those used up
// included (at 0).
func freeCustom(total, free sched.Custom) map[string]float64 {
	m, f := total.Map(), free.Map()
	for name := range m {
		m[name] = f[name]
	}
	return m
}

func jobsJSON(js []trainer.JobSummary) []jobJSON {
	out := []jobJSON{}
	for _, j := range js {
		out = append(out, jobJSON{ID: j.ID, Name: j.Name, State: string(j.State), Message: j.Message, Workers: j.Workers, Attempts: max(j.Attempts, 1),
			Started: j.Submitted.UTC().Format(time.RFC3339), Queued: j.Queued, Reason: j.Reason, Group: j.Group,
			Params: j.Params, Metric: j.Metric, Mode: j.Mode, Best: j.Best, BestIteration: j.BestIteration})
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printStatus(w io.Writer, addr string, st trainer.ClusterStatus) {
	alive := 0
	for _, n := range st.Nodes {
		if n.State == trainer.NodeAlive {
			alive++
		}
	}
	fmt.Fprintf(w, "cluster at %s (rtrain %s): %d of %d nodes alive\n", addr, st.Version, alive, len(st.Nodes))
	if len(st.Heads) > 0 {
		var heads []string
		for _, h := range st.Heads {
			role := "standby"
			if h.Leader {
				role = "active"
			}
			heads = append(heads, fmt.Sprintf("%s (%s)", h.Addr, role))
		}
		fmt.Fprintf(w, "heads: %s\n", strings.Join(heads, ", "))
	}
	fmt.Fprintln(w)
	custom := false
	for _, n := range st.Nodes {
		custom = custom || n.Node.Total.Custom != ""
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "NODE\tADDRESS\tSTATE\tCPU (free/total)\tGPU (free/total)\tMEMORY (free/total)\tHEARTBEAT"
	if custom {
		header += "\tRESOURCES (free/total)"
	}
	fmt.Fprintln(tw, header)
	for _, n := range st.Nodes {
		total, free := n.Node.Total, n.Free
		fmt.Fprintf(tw, "%s\t%s\t%s\t%g/%g\t%d/%d\t%s/%s\t%s ago", n.Node.ID, n.Node.Addr, n.State,
			free.CPU, total.CPU, len(n.FreeGPUs), total.GPU, text.Bytes(free.MemoryBytes), text.Bytes(total.MemoryBytes),
			n.HeartbeatAge.Round(100*time.Millisecond))
		if custom {
			var parts []string
			f := free.Custom.Map()
			for name, q := range total.Custom.Map() {
				parts = append(parts, fmt.Sprintf("%s %g/%g", name, f[name], q))
			}
			slices.Sort(parts)
			fmt.Fprintf(tw, "\t%s", strings.Join(parts, ", "))
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	printJobs(w, st.Jobs, false)
}

// printJobs prints jobs as a table. The PARAMS and BEST columns are there
// with trials (forced, or some job has params or a metric).
func printJobs(w io.Writer, jobs []trainer.JobSummary, trials bool) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no jobs")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// The group column only where some job has one: most clusters run
	// no sweeps.
	grouped := slices.ContainsFunc(jobs, func(j trainer.JobSummary) bool { return j.Group != "" })
	trials = trials || slices.ContainsFunc(jobs, func(j trainer.JobSummary) bool { return len(j.Params) > 0 || j.Metric != "" })
	head := []string{"JOB", "NAME", "STATE", "WORKERS", "ATTEMPTS", "SUBMITTED", "MESSAGE"}
	if trials {
		head = slices.Insert(head, 3, "PARAMS", "BEST")
	}
	if grouped {
		head = slices.Insert(head, 1, "GROUP")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, j := range jobs {
		row := []string{j.ID, j.Name, string(j.State), strconv.Itoa(j.Workers), strconv.Itoa(max(j.Attempts, 1)),
			j.Submitted.Local().Format("2006-01-02 15:04:05"), oneLine(j.Message)}
		if trials {
			row = slices.Insert(row, 3, paramsCell(j.Params), bestCell(j))
		}
		if grouped {
			row = slices.Insert(row, 1, cmp.Or(j.Group, "-"))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
}

// maxParamsCell is the most of a trial's params the table shows.
const maxParamsCell = 48

// paramsCell is params as k=v,k=v in key order, cut at maxParamsCell
// characters; "-" for none.
func paramsCell(params map[string]string) string {
	if len(params) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(params)) {
		parts = append(parts, k+"="+params[k])
	}
	s := []rune(strings.Join(parts, ","))
	if len(s) > maxParamsCell {
		return string(s[:maxParamsCell-3]) + "..."
	}
	return string(s)
}

// bestCell is a trial's best as metric=value; "-" before its first.
func bestCell(j trainer.JobSummary) string {
	if j.Best == nil {
		return "-"
	}
	return j.Metric + "=" + strconv.FormatFloat(*j.Best, 'g', 5, 64)
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func newJobsCmd() *cobra.Command {
	o := &clusterFlags{}
	var out outputFlag
	var group string
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List the cluster's jobs, and why pending ones wait",
		Long: `jobs lists the jobs the cluster's head keeps, oldest first, and why
pending ones wait. Jobs that are a sweep's trials (rtrain fit --group, --param,
--metric) show their group, their parameters (PARAMS) and the best value of
their metric among rank 0's reports so far (BEST); --group lists one sweep's.
-o json has them as "group", "params", "metric", "mode", "best" and
"best_iteration" (the report the best came at, 1 for the first).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.clientFor(&out)
			if err != nil {
				return err
			}
			defer c.Close()
			jobs, err := c.Jobs(cmd.Context())
			if err != nil {
				return err
			}
			if group != "" {
				jobs = slices.DeleteFunc(jobs, func(j trainer.JobSummary) bool { return j.Group != group })
			}
			if out.format == "json" {
				return writeJSON(cmd.OutOrStdout(), jobsJSON(jobs))
			}
			printJobs(cmd.OutOrStdout(), jobs, group != "")
			return nil
		},
	}
	addClusterFlags(cmd.Flags(), o, "the head, "+addressForm+" for every head of a cluster with standbys (default $"+AddressEnv+", else the head started here)")
	cmd.Flags().StringVar(&group, "group", "", "only the jobs of this group (a sweep's trials)")
	out.add(cmd)
	return cmd
}

func newLogsCmd() *cobra.Command {
	o := &clusterFlags{}
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a job's output; -f follows it to its end",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("give one job: its id or run name (`rtrain jobs` lists them)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			p := &printer{out: cmd.OutOrStdout(), err: cmd.ErrOrStderr()}
			res, err := c.Attach(cmd.Context(), args[0], follow, p.event)
			if res != nil && len(res.Workers) > 0 {
				p.summary(res, err)
			}
			var jerr *trainer.JobError
			if errors.As(err, &jerr) || (err != nil && !follow) {
				return err
			}
			if errors.Is(err, trainer.ErrCancelled) && cmd.Context().Err() != nil {
				return nil // the user stopped following, not the job
			}
			return err
		},
	}
	addClusterFlags(cmd.Flags(), o, "the head, "+addressForm+" for every head of a cluster with standbys (default $"+AddressEnv+", else the head started here)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the job until it ends")
	return cmd
}

func newDrainCmd() *cobra.Command {
	o := &clusterFlags{}
	cmd := &cobra.Command{
		Use:   "drain NODE",
		Short: "Take a node out of the cluster with notice; its workers move elsewhere",
		Long: `drain takes NODE out of scheduling and moves the workers running there:
their jobs restart them on the other nodes from the latest checkpoint, and the
move does not count against --max-failures (a preemption, not a failure).
Stopping an agent (` + "`rtrain stop`" + ` or SIGTERM) drains its node too. The node stays
out until its agent is started again.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("give one node (`rtrain status` lists them)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Drain(cmd.Context(), args[0], "drained by rtrain drain"); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rtrain: node %s drained\n", args[0])
			return nil
		},
	}
	addClusterFlags(cmd.Flags(), o, "the head, "+addressForm+" for every head of a cluster with standbys (default $"+AddressEnv+", else the head started here)")
	return cmd
}

// waitExit waits up to d for process pid, not a child of this one, to
// exit, through a pidfd, which becomes readable when it does. It reports
// whether the process is gone.
func waitExit(pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return errors.Is(err, unix.ESRCH) // gone already; else no pidfd here
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left.Milliseconds())+1)
		if n > 0 {
			return true
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false
		}
	}
}

// activeHead is the address of the head that leads, of those st names.
func activeHead(st trainer.ClusterStatus) string {
	for _, h := range st.Heads {
		if h.Leader {
			return h.Addr
		}
	}
	return ""
}
