package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/head"
	"github.com/rtrain/rtrain/cluster/sched"
)

const heartbeatHeading = "Heartbeat fan-in (10,000 agents at 1 Hz)"

type heartbeatOptions struct {
	rounds int
	agents int
	conns  int           // client connections the agents share
	window time.Duration // measured, after all registered and a warm-up
}

const (
	// headProcs is the requirement's 2 cores: the head runs with
	// GOMAXPROCS set to it.
	headProcs = 2
	// hbGoalAge: an age under two intervals means no beat was late by a
	// whole interval; the head's timeout is 5 s.
	hbGoalAge   = 2 * time.Second
	hbGoalRate  = 0.99 // of the beats sent
	hbWarmUp    = 2 * time.Second
	benchToken  = "RTRAIN_BENCH_TOKEN"
	headSampleW = "SAMPLE"
)

// headSample is what the head process reports every second: the oldest
// heartbeat of a live node, and how many nodes are alive and dead.
type headSample struct {
	maxAge      time.Duration
	alive, dead int
}

func (s headSample) String() string {
	return fmt.Sprintf("%s %d %d %d", headSampleW, s.maxAge.Milliseconds(), s.alive, s.dead)
}

// parseHeadSample reads a line headSample.String wrote; ok is false for
// other lines.
func parseHeadSample(line string) (s headSample, ok bool, err error) {
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != headSampleW {
		return headSample{}, false, nil
	}
	if len(f) != 4 {
		return headSample{}, true, fmt.Errorf("bad sample %q", line)
	}
	var n [3]int
	for i := range n {
		if n[i], err = strconv.Atoi(f[i+1]); err != nil {
			return headSample{}, true, fmt.Errorf("bad sample %q: %w", line, err)
		}
	}
	return headSample{maxAge: time.Duration(n[0]) * time.Millisecond, alive: n[1], dead: n[2]}, true, nil
}

// sampleOf summarizes a head's status.
func sampleOf(rep *clusterpb.StatusReply) headSample {
	var s headSample
	for _, n := range rep.Nodes {
		if n.State != "alive" {
			s.dead++
			continue
		}
		s.alive++
		s.maxAge = max(s.maxAge, time.Duration(n.HeartbeatAgeMs)*time.Millisecond)
	}
	return s
}

// serveHeartbeatHead is the head process of the heartbeat benchmark
// (rtrain-bench -heartbeat-head): a head.Registry on loopback, as `rtrain
// start --head` serves it. It writes "LISTEN ADDR", then a sample of its
// nodes every second, until ctx ends.
func serveHeartbeatHead(ctx context.Context, out io.Writer) error {
	sec := auth.Security{Token: os.Getenv(benchToken)}
	opts, err := sec.ServerOptions()
	if err != nil {
		return err
	}
	hs := head.NewRegistry(sched.New(), sec, head.Options{}, slog.New(slog.DiscardHandler))
	defer hs.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer(opts...)
	hs.RegisterWithoutJobs(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() { srv.Stop(); <-served }()
	fmt.Fprintf(out, "LISTEN %s\n", ln.Addr())
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-served:
			served <- err
			return err
		case <-t.C:
			fmt.Fprintln(out, sampleOf(hs.StatusReply()))
		}
	}
}

// hbRun is one heartbeat run.
type hbRun struct {
	window            time.Duration
	registering       time.Duration // all agents, from the first call
	ok, failed, rereg int           // calls started in the window
	lat               []time.Duration
	worstAge          time.Duration // over the head's samples in the window
	dead              int           // most nodes dead in a sample of the window
	headCPU, agentCPU time.Duration // in the window
}

func (r hbRun) rate() float64 { return float64(r.ok) / r.window.Seconds() }

// runHeartbeat measures heartbeat fan-in o.rounds times, each with a
// fresh head process.
func runHeartbeat(ctx context.Context, o heartbeatOptions, log *slog.Logger) (section, error) {
	var runs []hbRun
	for round := range o.rounds {
		r, err := heartbeatOnce(ctx, o)
		if err != nil {
			return section{}, err
		}
		runs = append(runs, r)
		log.Info("run", "round", round+1, "heartbeats/s", int(r.rate()), "p50", percentile(r.lat, 0.5), "p99", percentile(r.lat, 0.99),
			"worst_age", r.worstAge, "dead", r.dead, "failed", r.failed, "head_cores", fmt.Sprintf("%.2f", r.headCPU.Seconds()/r.window.Seconds()))
	}
	return renderHeartbeat(o, measuredLine(o.rounds, ""), runs), nil
}

// heartbeatOnce starts a head process and o.agents simulated agents in
// this one: each registers, then beats once an interval at its own
// phase, so the beats are spread evenly over the interval.
func heartbeatOnce(ctx context.Context, o heartbeatOptions) (hbRun, error) {
	self, err := os.Executable()
	if err != nil {
		return hbRun{}, err
	}
	token := auth.NewToken()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	head := exec.CommandContext(ctx, self, "-heartbeat-head")
	head.Env = append(os.Environ(), benchToken+"="+token, "GOMAXPROCS="+strconv.Itoa(headProcs))
	head.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	head.Cancel = func() error { return head.Process.Signal(syscall.SIGTERM) }
	var stderr bytes.Buffer
	head.Stderr = &stderr
	stdout, err := head.StdoutPipe()
	if err != nil {
		return hbRun{}, err
	}
	if err := head.Start(); err != nil {
		return hbRun{}, err
	}
	defer func() { cancel(); _ = head.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		_ = head.Wait()
		return hbRun{}, fmt.Errorf("head process: no address: %s", stderr.String())
	}
	addr, ok := strings.CutPrefix(lines.Text(), "LISTEN ")
	if !ok {
		return hbRun{}, fmt.Errorf("head process said %q", lines.Text())
	}
	type timed struct {
		at time.Time
		s  headSample
	}
	var (
		smu     sync.Mutex
		samples []timed
		readErr = make(chan error, 1)
	)
	go func() {
		for lines.Scan() {
			s, ok, err := parseHeadSample(lines.Text())
			if err != nil {
				readErr <- err
				return
			}
			if ok {
				smu.Lock()
				samples = append(samples, timed{time.Now(), s})
				smu.Unlock()
			}
		}
		readErr <- lines.Err()
	}()

	sec := auth.Security{Token: token}
	conns := make([]clusterpb.HeadClient, o.conns)
	for i := range conns {
		c, err := sec.Dial(addr)
		if err != nil {
			return hbRun{}, err
		}
		defer c.Close()
		conns[i] = clusterpb.NewHeadClient(c)
	}

	var (
		winStart, winEnd     atomic.Int64 // Unix ns; 0 until set
		nOK, nFailed, nRereg atomic.Int64
		lat                  = make([][]time.Duration, o.agents)
		registered           sync.WaitGroup
		regErr               = make(chan error, 1)
		regSlots             = make(chan struct{}, o.conns)
		agents               sync.WaitGroup
	)
	inWindow := func(t time.Time) bool {
		s, e, n := winStart.Load(), winEnd.Load(), t.UnixNano()
		return s != 0 && n >= s && (e == 0 || n < e)
	}
	actx, stopAgents := context.WithCancel(ctx)
	defer func() { stopAgents(); agents.Wait() }()
	epoch := time.Now()
	registered.Add(o.agents)
	for i := range o.agents {
		agents.Go(func() {
			id, interval, err := register(actx, conns[i%len(conns)], i, regSlots)
			registered.Done()
			if err != nil {
				select {
				case regErr <- err:
				default:
				}
				return
			}
			head := conns[i%len(conns)]
			// Beat at epoch + phase + k·interval, skipping slots already
			// past, as a ticker does.
			next := epoch.Add(time.Duration(i) * interval / time.Duration(o.agents))
			t := time.NewTimer(0)
			defer t.Stop()
			var mine []time.Duration
			defer func() { lat[i] = mine }()
			for {
				for !next.After(time.Now()) {
					next = next.Add(interval)
				}
				t.Reset(time.Until(next))
				select {
				case <-actx.Done():
					return
				case <-t.C:
				}
				start := time.Now()
				cctx, cancel := context.WithTimeout(actx, 3*interval)
				rep, err := head.Heartbeat(cctx, &clusterpb.HeartbeatRequest{NodeId: id})
				cancel()
				took := time.Since(start)
				if !inWindow(start) || actx.Err() != nil {
					continue
				}
				switch {
				case err != nil:
					nFailed.Add(1)
				case rep.Reregister:
					nRereg.Add(1)
				default:
					nOK.Add(1)
					mine = append(mine, took)
				}
			}
		})
	}
	allIn := make(chan struct{})
	go func() { registered.Wait(); close(allIn) }()
	// pause waits d, or until done closes if it is not nil (then d
	// running out is an error), failing early if an agent or the head
	// does.
	pause := func(d time.Duration, done <-chan struct{}) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			if done != nil {
				return fmt.Errorf("agents still registering after %s", d)
			}
			return nil
		case <-done:
			return nil
		case err := <-regErr:
			return err
		case err := <-readErr:
			return fmt.Errorf("head process: %v: %s", err, stderr.String())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := pause(2*time.Minute, allIn); err != nil {
		return hbRun{}, err
	}
	r := hbRun{registering: time.Since(epoch)}
	if err := pause(hbWarmUp, nil); err != nil {
		return hbRun{}, err
	}
	pid := head.Process.Pid
	cpu0, self0, t0 := processCPU(pid), selfCPU(), time.Now()
	winStart.Store(t0.UnixNano())
	if err := pause(o.window, nil); err != nil {
		return hbRun{}, err
	}
	t1 := time.Now()
	winEnd.Store(t1.UnixNano())
	r.headCPU, r.agentCPU, r.window = processCPU(pid)-cpu0, selfCPU()-self0, t1.Sub(t0)
	stopAgents()
	agents.Wait()
	r.ok, r.failed, r.rereg = int(nOK.Load()), int(nFailed.Load()), int(nRereg.Load())
	r.lat = slices.Concat(lat...)
	if len(r.lat) == 0 {
		return hbRun{}, errors.New("no heartbeat got through")
	}
	slices.Sort(r.lat)
	smu.Lock()
	for _, s := range samples {
		if !s.at.Before(t0) && s.at.Before(t1) {
			r.worstAge, r.dead = max(r.worstAge, s.s.maxAge), max(r.dead, s.s.dead)
		}
	}
	smu.Unlock()
	return r, nil
}

// register joins agent i to the head, waiting for one of slots, and
// returns its node id and heartbeat interval.
func register(ctx context.Context, head clusterpb.HeadClient, i int, slots chan struct{}) (string, time.Duration, error) {
	node := &clusterpb.Node{Id: fmt.Sprintf("node-%05d", i), Addr: "127.0.0.1", AgentAddr: "127.0.0.1:1",
		Total: &clusterpb.Resources{Cpu: 64, Gpu: 8, MemoryBytes: 512 << 30}}
	for g := range int32(8) {
		node.Gpus = append(node.Gpus, &clusterpb.GPU{Index: g, Minor: g})
	}
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
	rep, err := head.Register(ctx, &clusterpb.RegisterRequest{Node: node})
	<-slots
	if err != nil {
		return "", 0, fmt.Errorf("register %s: %w", node.Id, auth.RemoteError(err))
	}
	return rep.NodeId, time.Duration(rep.HeartbeatIntervalMs) * time.Millisecond, nil
}

func renderHeartbeat(o heartbeatOptions, measured string, runs []hbRun) section {
	var rates, cores, agentCores []float64
	var p50s, p99s, ages []time.Duration
	var dead, failed []float64
	for _, r := range runs {
		rates = append(rates, r.rate())
		cores = append(cores, r.headCPU.Seconds()/r.window.Seconds())
		agentCores = append(agentCores, r.agentCPU.Seconds()/r.window.Seconds())
		p50s, p99s = append(p50s, percentile(r.lat, 0.5)), append(p99s, percentile(r.lat, 0.99))
		ages = append(ages, r.worstAge)
		dead, failed = append(dead, float64(r.dead)), append(failed, float64(r.failed+r.rereg))
	}
	sent := float64(o.agents) // a second
	rate, slowRate := floatStats(rates, true)
	core, highCore := floatStats(cores, false)
	agentCore, _ := floatStats(agentCores, false)
	_, maxDead := floatStats(dead, false)
	_, maxFailed := floatStats(failed, false)
	p50, p99, age := summarize(p50s), summarize(p99s), summarize(ages)
	rateOK, ageOK, deadOK := rate/sent >= hbGoalRate, age.median < hbGoalAge, maxDead == 0 && maxFailed == 0

	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", measured)
	fmt.Fprintf(&b, "A head process serves `head.Registry` over gRPC on loopback, with the cluster token checked on every call, as `rtrain start --head` does, and GOMAXPROCS=%d. This process simulates %s node agents over %d shared client connections: each registers (8 GPUs, 64 CPUs), then calls Heartbeat once a second, the agents' phases spread evenly over the second. After all have registered and a %.0f s warm-up, %.0f s are measured. Every second the head samples its nodes as `rtrain status` shows them (`StatusReply`), and the worst heartbeat age of a live node in those samples is how far the head fell behind: an agent beats every second, so the age stays near 1 s when every beat arrives on time, and a node is declared dead at 5 s. The head's CPU includes building those samples, 10,000 nodes a second.\n\n",
		headProcs, groupDigits(o.agents), o.conns, hbWarmUp.Seconds(), o.window.Seconds())
	fmt.Fprintf(&b, "The anchor is the requirement itself (issue: heartbeats): %s agents at 1 Hz on %d cores without falling behind. This machine has %d cores, which the simulated agents share with the head, so the head has less than its 2 cores here.\n\n", groupDigits(o.agents), headProcs, runtime.NumCPU())
	fmt.Fprintf(&b, "| measure | result | anchor | ratio | goal |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| heartbeats handled a second | %s (%s) | %s sent | %.3f | ≥ %.2f: %s |\n", groupDigits(int(rate)), groupDigits(int(slowRate)), groupDigits(o.agents), rate/sent, hbGoalRate, yesNo(rateOK))
	fmt.Fprintf(&b, "| Heartbeat call, p50 | %.2f ms (%.2f) | | | |\n", float64(p50.median)/1e6, float64(p50.p95)/1e6)
	fmt.Fprintf(&b, "| Heartbeat call, p99 | %.2f ms (%.2f) | | | |\n", float64(p99.median)/1e6, float64(p99.p95)/1e6)
	fmt.Fprintf(&b, "| worst heartbeat age the head saw | %.2f s (%.2f) | timeout %.0f s | %.2f | < %.0f s: %s |\n", age.median.Seconds(), age.p95.Seconds(), cluster.DefaultHeartbeatTimeout.Seconds(), age.median.Seconds()/cluster.DefaultHeartbeatTimeout.Seconds(), hbGoalAge.Seconds(), yesNo(ageOK))
	fmt.Fprintf(&b, "| nodes declared dead, calls failed (most in a run) | %.0f, %.0f | 0 | | %s |\n", maxDead, maxFailed, yesNo(deadOK))
	fmt.Fprintf(&b, "| head CPU | %.2f cores (%.2f) | %d cores | %.2f | |\n", core, highCore, headProcs, core/headProcs)
	fmt.Fprintf(&b, "\nThe simulated agents, in this process, used %.2f cores on top (median). ", agentCore)
	if rateOK && ageOK && deadOK {
		b.WriteString("Goal (issue: heartbeats): met, the head kept up with every agent.\n")
	} else {
		b.WriteString("Goal (issue: heartbeats): not met.\n")
	}
	return section{heading: heartbeatHeading, body: b.String()}
}
