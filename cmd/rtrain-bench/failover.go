package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/internal/etcdserver"
	"github.com/rtrain/rtrain/trainer"
)

const failoverHeading = "Failover of the head"

// Goals (issue: head HA): a standby leads within two lease TTLs; the
// heads' lease is etcdstore's default.
const (
	failoverTTL  = 5 * time.Second
	failoverGoal = 2 * failoverTTL
)

type failoverOptions struct {
	rounds int
	jobs   int // the restarted head re-adopts this many
	agents int
	rtrain string
	python string
}

// failoverRun is one SIGKILL of the active head and what followed, from
// the kill.
type failoverRun struct {
	accepts time.Duration // the standby accepts a job
	report  time.Duration // the running job's next report reaches its client
	// Steps a second the workers made (their own clocks) in the 5 s
	// before the kill and from it to the report.
	before, during float64
}

// readoptRun is one restart of a single head running o.jobs jobs.
type readoptRun struct {
	serving time.Duration // the new head process answers status
	all     time.Duration // every job's next event reaches a watcher
}

// runFailover measures both: a standby taking over one running job, and a
// restarted head re-adopting o.jobs of them.
func runFailover(ctx context.Context, o failoverOptions, log *slog.Logger) (section, error) {
	var fails []failoverRun
	var readopts []readoptRun
	for round := range o.rounds {
		f, err := failoverOnce(ctx, o, log)
		if err != nil {
			return section{}, fmt.Errorf("failover: %w", err)
		}
		fails = append(fails, f)
		log.Info("failover", "round", round+1, "accepts", f.accepts.Round(time.Millisecond), "report", f.report.Round(time.Millisecond),
			"steps/s before", fmt.Sprintf("%.1f", f.before), "during", fmt.Sprintf("%.1f", f.during))
		r, err := readoptOnce(ctx, o, log)
		if err != nil {
			return section{}, fmt.Errorf("re-adopt: %w", err)
		}
		readopts = append(readopts, r)
		log.Info("re-adopt", "round", round+1, "jobs", o.jobs, "serving", r.serving.Round(time.Millisecond), "all", r.all.Round(time.Millisecond))
	}
	return renderFailover(o, fails, readopts), nil
}

// benchCluster is rtrain daemons on this machine's loopback, each with a
// home of its own as separate machines have.
type benchCluster struct {
	o     failoverOptions
	dir   string
	token string
	mu    sync.Mutex
	procs map[string]*exec.Cmd
}

func newBenchCluster(o failoverOptions) (*benchCluster, error) {
	dir, err := os.MkdirTemp("", "rtrain-bench-failover-")
	if err != nil {
		return nil, err
	}
	return &benchCluster{o: o, dir: dir, token: auth.NewToken(), procs: map[string]*exec.Cmd{}}, nil
}

func (c *benchCluster) env(name string) []string {
	home := filepath.Join(c.dir, name)
	_ = os.MkdirAll(home, 0o700)
	return append(os.Environ(), "HOME="+home, "RTRAIN_STATE_DIR="+home, auth.TokenEnv+"="+c.token, "RTRAIN_PYTHON="+c.o.python)
}

// start runs `rtrain args...` as the daemon name, its output in its home.
func (c *benchCluster) start(name string, args ...string) error {
	cmd := exec.Command(c.o.rtrain, args...)
	cmd.Env = c.env(name)
	f, err := os.OpenFile(filepath.Join(c.dir, name, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return err
	}
	c.mu.Lock()
	c.procs[name] = cmd
	c.mu.Unlock()
	return nil
}

func (c *benchCluster) kill(name string) {
	c.mu.Lock()
	cmd := c.procs[name]
	delete(c.procs, name)
	c.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

// close stops every daemon, agents first so that they stop their workers
// while a head may still hear them, and removes their files.
func (c *benchCluster) close() {
	c.mu.Lock()
	procs := c.procs
	c.procs = map[string]*exec.Cmd{}
	c.mu.Unlock()
	for _, heads := range []bool{false, true} {
		var wg sync.WaitGroup
		for name, p := range procs {
			if strings.HasPrefix(name, "head") != heads {
				continue
			}
			wg.Go(func() {
				_ = p.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { _ = p.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					_ = p.Process.Kill()
					<-done
				}
			})
		}
		wg.Wait()
	}
	_ = os.RemoveAll(c.dir)
}

func (c *benchCluster) head(name string, port int, extra ...string) error {
	args := append([]string{"start", "--head", "--block", "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--insecure", "--dashboard-port", "-1", "--token", c.token}, extra...)
	return c.start(name, args...)
}

func (c *benchCluster) agents(addrs string) error {
	for i := range c.o.agents {
		if err := c.start(fmt.Sprintf("agent%d", i), "start", "--block", "--address", addrs, "--insecure", "--token", c.token,
			"--num-cpus", strconv.Itoa(max(c.o.jobs/c.o.agents+1, 4)), "--node-name", fmt.Sprintf("sim%d", i), "--node-ip-address", "127.0.0.1"); err != nil {
			return err
		}
	}
	return nil
}

// script writes a job script into its own directory and returns its path.
func (c *benchCluster) script(name, body string) (string, error) {
	dir := filepath.Join(c.dir, "jobs", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "job.py")
	return p, os.WriteFile(p, []byte(body), 0o644)
}

// waitNodes waits until the head at addrs lists n alive nodes.
func waitNodes(ctx context.Context, c *trainer.Client, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	for {
		st, err := c.Status(ctx)
		last = err
		if err == nil {
			alive := 0
			for _, nd := range st.Nodes {
				if nd.State == trainer.NodeAlive {
					alive++
				}
			}
			if alive >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d nodes never joined (the head's last answer: %v): %w", n, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

const failoverReportScript = `import time
import rtrain

step = 0
while True:
    step += 1
    rtrain.report({"step": step, "at": time.time()})
    time.sleep(0.05)
`

// failoverOnce runs one job on two heads over etcd, SIGKILLs the leader
// and times the standby's takeover.
func failoverOnce(ctx context.Context, o failoverOptions, log *slog.Logger) (failoverRun, error) {
	c, err := newBenchCluster(o)
	if err != nil {
		return failoverRun{}, err
	}
	defer c.close()
	etcd, err := etcdserver.Start(ctx, etcdserver.Options{Dir: filepath.Join(c.dir, "etcd")})
	if err != nil {
		return failoverRun{}, err
	}
	defer etcd.Close()
	p1, err := freeLoopbackPort()
	if err != nil {
		return failoverRun{}, err
	}
	p2, err := freeLoopbackPort()
	if err != nil {
		return failoverRun{}, err
	}
	a1, a2 := "127.0.0.1:"+strconv.Itoa(p1), "127.0.0.1:"+strconv.Itoa(p2)
	store := "etcd://" + etcd.Addr()
	if err := c.head("head1", p1, "--store", store); err != nil {
		return failoverRun{}, err
	}
	client, err := trainer.Dial(a1+","+a2, auth.Security{Token: c.token})
	if err != nil {
		return failoverRun{}, err
	}
	defer client.Close()
	if err := waitNodes(ctx, client, 0); err != nil {
		return failoverRun{}, err
	}
	if err := c.head("head2", p2, "--store", store); err != nil {
		return failoverRun{}, err
	}
	if err := c.agents(a1 + "," + a2); err != nil {
		return failoverRun{}, err
	}
	if err := waitNodes(ctx, client, o.agents); err != nil {
		return failoverRun{}, err
	}
	job, err := c.script("reporter", failoverReportScript)
	if err != nil {
		return failoverRun{}, err
	}
	sub, err := client.Submit(ctx, trainer.Config{Script: job, WorkingDir: filepath.Dir(job), Workers: 2, Python: o.python, Name: "reporter"})
	if err != nil {
		return failoverRun{}, err
	}
	// The workers' own clocks, and when each report reached the client.
	var mu sync.Mutex
	var made []float64
	var arrived []time.Time
	fctx, stopFollow := context.WithCancel(ctx)
	followed := make(chan error, 1)
	go func() {
		_, err := client.Attach(fctx, sub.JobID, true, func(e trainer.Event) {
			if e.Type != trainer.EventReport || e.Rank != 0 {
				return
			}
			at, _ := checkpoint.MetricNumber(e.Metrics.Values["at"])
			mu.Lock()
			made, arrived = append(made, at), append(arrived, time.Now())
			mu.Unlock()
		})
		followed <- err
	}()
	defer func() { stopFollow(); <-followed }()
	// Steady state first.
	time.Sleep(6 * time.Second)

	leader := "head1"
	if st, err := client.Status(ctx); err == nil && activeAddr(st) == a2 {
		leader = "head2"
	}
	c.kill(leader)
	killed := time.Now()

	// A job the standby accepts: one that exits at once.
	probe, err := c.script("probe", "print('probe')\n")
	if err != nil {
		return failoverRun{}, err
	}
	var r failoverRun
	pc, err := trainer.Dial(a1+","+a2, auth.Security{Token: c.token})
	if err != nil {
		return failoverRun{}, err
	}
	defer pc.Close()
	for n := 0; ; n++ {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := pc.Submit(sctx, trainer.Config{Script: probe, WorkingDir: filepath.Dir(probe), Workers: 1, Python: o.python, Name: fmt.Sprintf("probe-%d", n)})
		cancel()
		if err == nil {
			r.accepts = time.Since(killed)
			break
		}
		if time.Since(killed) > time.Minute {
			return failoverRun{}, fmt.Errorf("no head accepted a job a minute after the leader's death: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	deadline := time.Now().Add(time.Minute)
	for r.report == 0 {
		mu.Lock()
		for _, t := range arrived {
			if t.After(killed) {
				r.report = t.Sub(killed)
				break
			}
		}
		mu.Unlock()
		if time.Now().After(deadline) {
			return failoverRun{}, errors.New("no report reached the client a minute after the leader's death")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // the reports made during the outage arrive
	k := float64(killed.UnixNano()) / 1e9
	out := k + r.report.Seconds()
	mu.Lock()
	var nBefore, nDuring int
	for _, at := range made {
		switch {
		case at >= k-5 && at < k:
			nBefore++
		case at >= k && at < out:
			nDuring++
		}
	}
	mu.Unlock()
	r.before, r.during = float64(nBefore)/5, float64(nDuring)/r.report.Seconds()
	if err := client.Stop(ctx, sub.JobID); err != nil {
		log.Warn("stop the job", "err", err)
	}
	return r, nil
}

func activeAddr(st trainer.ClusterStatus) string {
	for _, h := range st.Heads {
		if h.Leader {
			return h.Addr
		}
	}
	return ""
}

const tickScript = `import time

while True:
    print("tick", flush=True)
    time.sleep(0.5)
`

// readoptOnce runs o.jobs jobs on one head, SIGKILLs it, starts it again
// and times until every job's next event reaches a watcher.
func readoptOnce(ctx context.Context, o failoverOptions, log *slog.Logger) (readoptRun, error) {
	c, err := newBenchCluster(o)
	if err != nil {
		return readoptRun{}, err
	}
	defer c.close()
	port, err := freeLoopbackPort()
	if err != nil {
		return readoptRun{}, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := c.head("head", port); err != nil {
		return readoptRun{}, err
	}
	sec := auth.Security{Token: c.token}
	client, err := trainer.Dial(addr, sec)
	if err != nil {
		return readoptRun{}, err
	}
	defer client.Close()
	if err := c.agents(addr); err != nil {
		return readoptRun{}, err
	}
	if err := waitNodes(ctx, client, o.agents); err != nil {
		return readoptRun{}, err
	}
	job, err := c.script("tick", tickScript)
	if err != nil {
		return readoptRun{}, err
	}
	ids := make([]string, o.jobs)
	for i := range o.jobs {
		sub, err := client.Submit(ctx, trainer.Config{Script: job, WorkingDir: filepath.Dir(job), Workers: 1, CPUsPerWorker: 1,
			Python: o.python, Name: fmt.Sprintf("tick-%03d", i)})
		if err != nil {
			return readoptRun{}, err
		}
		ids[i] = sub.JobID
	}
	// Every job running and printing.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		jobs, err := client.Jobs(ctx)
		running := 0
		for _, j := range jobs {
			if j.State == trainer.StateRunning {
				running++
			}
		}
		if err == nil && running == o.jobs {
			break
		}
		if time.Now().After(deadline) {
			return readoptRun{}, fmt.Errorf("%d of %d jobs running after 3 minutes", running, o.jobs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	// Where each job's events stand: the watcher asks for the next.
	next, epoch, seq := make([]int64, o.jobs), make([]int64, o.jobs), make([]int64, o.jobs)
	conn, err := sec.Dial(addr)
	if err != nil {
		return readoptRun{}, err
	}
	defer conn.Close()
	head := clusterpb.NewHeadClient(conn)
	for i, id := range ids {
		stream, err := head.WatchJob(ctx, &clusterpb.WatchJobRequest{Job: id})
		if err != nil {
			return readoptRun{}, err
		}
		for {
			m, err := stream.Recv()
			if err != nil {
				break
			}
			next[i], epoch[i], seq[i] = m.Index+1, m.Epoch, max(seq[i], m.GroupSeq)
		}
	}

	c.kill("head")
	restarted := time.Now()
	if err := c.head("head", port); err != nil {
		return readoptRun{}, err
	}
	// Each poll on a connection of its own: one that saw the head die
	// waits out gRPC's reconnect backoff, a second, not the head.
	var r readoptRun
	for r.serving == 0 {
		if answers(ctx, sec, addr) {
			r.serving = time.Since(restarted)
		}
		if time.Since(restarted) > time.Minute {
			return readoptRun{}, errors.New("the restarted head did not answer within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	fresh, err := sec.Dial(addr)
	if err != nil {
		return readoptRun{}, err
	}
	defer fresh.Close()
	head = clusterpb.NewHeadClient(fresh)
	var wg sync.WaitGroup
	errs := make([]error, o.jobs)
	last := make([]time.Duration, o.jobs)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for i, id := range ids {
		wg.Go(func() {
			// The first line the worker printed after those had: the head
			// may first serve again some that were.
			stream, err := head.WatchJob(wctx, &clusterpb.WatchJobRequest{Job: id, From: next[i], Epoch: epoch[i], Follow: true})
			for err == nil {
				var m *clusterpb.JobEvent
				if m, err = stream.Recv(); err == nil && m.GroupSeq > seq[i] {
					break
				}
			}
			errs[i], last[i] = err, time.Since(restarted)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return readoptRun{}, err
	}
	for _, d := range last {
		r.all = max(r.all, d)
	}
	for _, id := range ids {
		if err := client.Stop(ctx, id); err != nil {
			log.Warn("stop a job", "job", id, "err", err)
		}
	}
	return r, nil
}

// answers says whether the head at addr answers Status on a connection
// of its own within a second.
func answers(ctx context.Context, sec auth.Security, addr string) bool {
	conn, err := sec.Dial(addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = clusterpb.NewHeadClient(conn).Status(ctx, &clusterpb.StatusRequest{})
	return err == nil
}

func renderFailover(o failoverOptions, fails []failoverRun, readopts []readoptRun) section {
	var b strings.Builder
	fmt.Fprintln(&b, measuredLine(o.rounds, ""))
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "Two heads on one etcd (Debian's 3.4, on loopback), the lease's TTL %s, %d agents on this machine; a 2-worker job reporting every 50 ms. "+
		"The active head is SIGKILLed; the times run from the kill.\n\n", failoverTTL, o.agents)
	var accepts, reports []time.Duration
	var before, during []float64
	for _, f := range fails {
		accepts, reports = append(accepts, f.accepts), append(reports, f.report)
		before, during = append(before, f.before), append(during, f.during)
	}
	sa, sr := summarize(accepts), summarize(reports)
	fmt.Fprintln(&b, "| measure | median | p95 | goal |")
	fmt.Fprintln(&b, "|---|---|---|---|")
	fmt.Fprintf(&b, "| the standby accepts a job | %s | %s | < %s (2 TTLs): %s |\n", sa.median.Round(time.Millisecond), sa.p95.Round(time.Millisecond), failoverGoal, goalMet(sa.p95 < failoverGoal))
	fmt.Fprintf(&b, "| the running job's next report reaches its client | %s | %s | < %s: %s |\n", sr.median.Round(time.Millisecond), sr.p95.Round(time.Millisecond), failoverGoal, goalMet(sr.p95 < failoverGoal))
	mb, _ := floatStats(before, true)
	md, _ := floatStats(during, true)
	fmt.Fprintf(&b, "| the job's steps/s, 5 s before the kill → kill to that report | %.1f → %.1f | | within noise: %s |\n\n", mb, md, goalMet(md >= 0.9*mb))
	var serving, all []time.Duration
	for _, r := range readopts {
		serving, all = append(serving, r.serving), append(all, r.all)
	}
	ss, sl := summarize(serving), summarize(all)
	fmt.Fprintf(&b, "A single head (bbolt job table) running %d one-worker jobs on %d agents, SIGKILLed and started again: it answers `rtrain status` after %s (p95 %s), "+
		"and every job's next event reaches a watcher %s (p95 %s) after its start, the agents' re-registration and the head's wait for them included.\n",
		o.jobs, o.agents, ss.median.Round(time.Millisecond), ss.p95.Round(time.Millisecond), sl.median.Round(time.Millisecond), sl.p95.Round(time.Millisecond))
	return section{heading: failoverHeading, body: b.String()}
}

func goalMet(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
