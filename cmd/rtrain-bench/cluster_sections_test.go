package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/sched"
)

func TestGroupDigits(t *testing.T) {
	tests := map[int]string{0: "0", 999: "999", 1000: "1,000", 10_000: "10,000", 1_234_567: "1,234,567", -4500: "-4,500"}
	for n, want := range tests {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFloatStats(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	if med, tail := floatStats(v, false); med != 5.5 || tail != 10 {
		t.Errorf("floatStats(high worse) = %v, %v; want 5.5, 10", med, tail)
	}
	if med, tail := floatStats(v, true); med != 5.5 || tail != 1 {
		t.Errorf("floatStats(low worse) = %v, %v; want 5.5, 1", med, tail)
	}
	if med, tail := floatStats(nil, true); med != 0 || tail != 0 {
		t.Errorf("floatStats(nothing) = %v, %v", med, tail)
	}
}

func TestSchedulerSection(t *testing.T) {
	us := func(n int) time.Duration { return time.Duration(n) * time.Microsecond }
	samples := map[sched.Strategy][]schedSample{
		sched.Pack:         {{rate: 200_000, p50: us(2), p99: us(40)}, {rate: 100_000, p50: us(4), p99: us(60)}},
		sched.Spread:       {{rate: 7_650, p50: us(3), p99: us(6000)}},
		sched.StrictPack:   {{rate: 7_000, p50: us(1), p99: us(3)}},
		sched.StrictSpread: {{rate: 1e6, p50: us(2), p99: us(4999)}},
	}
	sec := renderScheduler(schedOptions{rounds: 2, duration: 3 * time.Second}, "Measured on X.", samples)
	if sec.heading != schedHeading || onlyName(sec.heading) != "scheduler" {
		t.Errorf("heading %q, -only name %q", sec.heading, onlyName(sec.heading))
	}
	requireContains(t, sec.body,
		"Measured on X.\n\n", "not measured here",
		"| PACK | 150,000 (100,000) | 196 | 3.0 µs (4.0) | 0.0017 | 50.0 µs (60.0) | met |",
		"| SPREAD | 7,650 (7,650) | 10 | 3.0 µs (3.0) | 0.0017 | 6000.0 µs (6000.0) | not met |",
		"| STRICT_PACK | 7,000 (7,000) | 9 |",
		"| STRICT_SPREAD | 1,000,000 (1,000,000) | 1307 | 2.0 µs (2.0) | 0.0011 | 4999.0 µs (4999.0) | met |",
		"This run: not met for SPREAD, STRICT_PACK.", "bench-scheduler.svg")
	svg := sec.charts["bench-scheduler.svg"]
	requireSVG(t, svg)
	requireContains(t, string(svg), "goal 10×", "STRICT_SPREAD")
}

func TestHeadSample(t *testing.T) {
	rep := &clusterpb.StatusReply{Nodes: []*clusterpb.NodeStatus{
		{State: "alive", HeartbeatAgeMs: 900},
		{State: "alive", HeartbeatAgeMs: 1020},
		{State: "dead", HeartbeatAgeMs: 9000},
		{State: "drained", HeartbeatAgeMs: 7000},
	}}
	s := sampleOf(rep)
	if want := (headSample{maxAge: 1020 * time.Millisecond, alive: 2, dead: 2}); s != want {
		t.Fatalf("sampleOf = %+v, want %+v", s, want)
	}
	got, ok, err := parseHeadSample(s.String())
	if err != nil || !ok || got != s {
		t.Errorf("parseHeadSample(%q) = %+v, %v, %v; want %+v", s.String(), got, ok, err, s)
	}
	if _, ok, err := parseHeadSample("LISTEN 127.0.0.1:1"); ok || err != nil {
		t.Errorf("another line: ok %v, err %v", ok, err)
	}
	for _, bad := range []string{"SAMPLE 1 2", "SAMPLE a 1 2"} {
		if _, _, err := parseHeadSample(bad); err == nil {
			t.Errorf("parseHeadSample(%q) accepted it", bad)
		}
	}
}

func TestHeartbeatSection(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	run := func(ok int, age time.Duration, dead int) hbRun {
		return hbRun{window: 10 * time.Second, ok: ok, lat: []time.Duration{ms(1), ms(1), ms(2), ms(30)},
			worstAge: age, dead: dead, headCPU: 5 * time.Second, agentCPU: 8 * time.Second}
	}
	o := heartbeatOptions{rounds: 2, agents: 10_000, conns: 200, window: 10 * time.Second}
	sec := renderHeartbeat(o, "Measured on X.", []hbRun{run(100_000, ms(1010), 0), run(99_000, ms(1100), 0)})
	if sec.heading != heartbeatHeading || onlyName(sec.heading) != "heartbeat" {
		t.Errorf("heading %q, -only name %q", sec.heading, onlyName(sec.heading))
	}
	requireContains(t, sec.body, "Measured on X.\n\n", "over 200 shared client connections",
		"| heartbeats handled a second | 9,950 (9,900) | 10,000 sent | 0.995 | ≥ 0.99: met |",
		"| Heartbeat call, p50 | 1.00 ms (1.00) |", "| Heartbeat call, p99 | 2.00 ms (2.00) |",
		"| worst heartbeat age the head saw | 1.05 s (1.10) | timeout 5 s | 0.21 | < 2 s: met |",
		"| nodes declared dead, calls failed (most in a run) | 0, 0 | 0 | | met |",
		"| head CPU | 0.50 cores (0.50) | 2 cores | 0.25 | |", "used 0.80 cores on top", "Goal (issue: heartbeats): met")

	behind := renderHeartbeat(o, "Measured on X.", []hbRun{run(90_000, ms(4000), 3)})
	requireContains(t, behind.body, "≥ 0.99: not met", "< 2 s: not met", "| 3, 0 | 0 | | not met |", "Goal (issue: heartbeats): not met.")
}

// recoveryFixture is a run's stamps and launcher output, death at 100 s.
func recoveryFixture(resumeAt int) (string, []timedLine) {
	at := func(s float64) time.Time { return time.Unix(0, int64(s*1e9)) }
	stamps := "start 0 0 90.000000\nstart 1 0 90.010000\nloaded 0 0 91.000000 0\nloaded 1 0 91.000000 0\n" +
		"death 1 0 100.000000\n" +
		"start 1 1 100.100000\nstart 0 1 100.120000\n" +
		"imported 0 1 100.700000\nimported 1 1 100.650000\n" +
		"ready 0 1 100.710000\nready 1 1 100.710000\n" +
		fmt.Sprintf("loaded 0 1 100.730000 %d\nloaded 1 1 100.720000 %d\n", resumeAt, resumeAt) +
		"step 0 1 100.800000\nstep 1 1 100.790000\n"
	lines := []timedLine{
		{at(89.9), "rtrain: starting 2 workers on 1 node"},
		{at(100.01), "rtrain: rank 1 (pid 7) failed: killed by signal 9 (killed); stopping the other workers"},
		{at(100.02), "rtrain: rank 0 (pid 6) failed: exit code 1; stopping the other workers"},
		{at(100.05), "rtrain: attempt 1: rank 1 failed: killed by signal 9 (killed); restarting from /x/checkpoint_000001 (failure 1 of --max-failures 1)"},
		{at(100.06), "rtrain: starting 2 workers on 1 node"},
	}
	return stamps, lines
}

func TestParseRecovery(t *testing.T) {
	cs := recContenders(recoveryOptions{rtrain: "bin/rtrain", python: "python3"})
	stamps, lines := recoveryFixture(recoveryResumeStep)
	r, err := parseRecovery(stamps, lines, cs[0])
	if err != nil {
		t.Fatal(err)
	}
	ms := func(d time.Duration) int64 { return d.Round(time.Millisecond).Milliseconds() }
	got := map[string]int64{}
	for _, p := range append(phases, phaseTeardown, phasePlace) {
		d, ok := p.of(r)
		if !ok {
			t.Errorf("%s: no figure", p.short)
		}
		got[p.short] = ms(d)
	}
	want := map[string]int64{"detection": 10, "restart": 110, "import torch": 580, "init_process_group": 10, "checkpoint load": 20,
		"first step": 70, "total": 800, "overhead": 200, "teardown": 40, "placement": 70}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %d ms, want %d", k, got[k], w)
		}
	}

	// torchrun has no restart line of its own.
	torchLines := []timedLine{{time.Unix(101, 0), "ERROR:torch.distributed.elastic.multiprocessing.api:failed (exitcode: 1) local_rank: 0 (pid: 7250) of binary: /usr/bin/python3"}}
	r, err = parseRecovery(stamps, torchLines, cs[1])
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := phases[0].of(r); d != time.Second {
		t.Errorf("torchrun detection = %s, want 1s", d)
	}
	if _, ok := phaseTeardown.of(r); ok {
		t.Error("torchrun has a teardown figure")
	}

	if _, err := parseRecovery(stamps, nil, cs[0]); err == nil || !strings.Contains(err.Error(), "failure line") {
		t.Errorf("no launcher lines: %v", err)
	}
	fresh, _ := recoveryFixture(0)
	if _, err := parseRecovery(fresh, lines, cs[0]); err == nil || !strings.Contains(err.Error(), "did not resume") {
		t.Errorf("restarted from scratch: %v", err)
	}
	if _, err := parseRecovery("death x", lines, cs[0]); err == nil {
		t.Error("a bad stamp was accepted")
	}
}

func TestRecoverySection(t *testing.T) {
	cs := recContenders(recoveryOptions{rtrain: "bin/rtrain", python: "python3"})
	stamps, lines := recoveryFixture(recoveryResumeStep)
	rt, err := parseRecovery(stamps, lines, cs[0])
	if err != nil {
		t.Fatal(err)
	}
	// torchrun: the same, but noticed 2.5 s after the death.
	tr := rt
	tr.detected, tr.restarting = rt.death.Add(2500*time.Millisecond), time.Time{}
	tr.start, tr.imported, tr.ready = tr.start.Add(2490*time.Millisecond), tr.imported.Add(2490*time.Millisecond), tr.ready.Add(2490*time.Millisecond)
	tr.loaded, tr.step = tr.loaded.Add(2490*time.Millisecond), tr.step.Add(2490*time.Millisecond)
	sec := renderRecovery(recoveryOptions{rounds: 1}, "Measured on X.", map[string][]recoveryRun{"rtrain": {rt}, "torchrun": {tr}})
	if sec.heading != recoveryHeading || onlyName(sec.heading) != "recovery" {
		t.Errorf("heading %q, -only name %q", sec.heading, onlyName(sec.heading))
	}
	requireContains(t, sec.body, "Measured on X.\n\n",
		"| detection: death → the launcher reports the failure | 10 ms (10) | 2500 ms (2500) | 0.00 |",
		"| import torch | 580 ms (580) | 580 ms (580) | 1.00 |",
		"| total: death → first step done | 800 ms (800) | 3290 ms (3290) | 0.24 |",
		"teardown (the other rank stopped, the checkpoint restored) 40 ms (40), then placement and process start 70 ms (70)",
		"rtrain detected it in 10 ms (met), with 0.20 s of overhead (met)")
	requireSVG(t, sec.charts["bench-recovery.svg"])
}

// -only NAME measures the section whose heading onlyName turns into NAME.
func TestBenchmarksMatchSections(t *testing.T) {
	if len(benchmarks) != len(sectionOrder) {
		t.Fatalf("%d benchmarks, %d sections", len(benchmarks), len(sectionOrder))
	}
	for i, b := range benchmarks {
		if got := onlyName(sectionOrder[i]); got != b.name {
			t.Errorf("section %q is measured by -only %s, want %s", sectionOrder[i], got, b.name)
		}
	}
}

func TestParseSoak(t *testing.T) {
	for name, tc := range map[string]struct {
		out             string
		crashed, agreed bool
	}{
		"clean":                        {out: "[rank 0] rank 0 of 4 checksum 1.5\n[rank 1] rank 1 of 4 checksum 1.5\n[rank 2] rank 2 of 4 checksum 1.5\n[rank 3] rank 3 of 4 checksum 1.5\n", agreed: true},
		"interleaved on a shared pipe": {out: "rank 0 of 4 checksum 1.5rank 1 of 4 checksum 1.5\n\nrank 2 of 4 checksum 1.5\nrank 3 of 4 checksum 1.5\n", agreed: true},
		"one rank missing":             {out: "rank 0 of 4 checksum 1.5\nrank 1 of 4 checksum 1.5\nrank 2 of 4 checksum 1.5\n"},
		"disagree":                     {out: "rank 0 of 4 checksum 1.5\nrank 1 of 4 checksum 1.5\nrank 2 of 4 checksum 1.5\nrank 3 of 4 checksum 1.6\n"},
		"warned": {out: "rank 0 of 4 checksum 1\nrank 1 of 4 checksum 1\nrank 2 of 4 checksum 1\nrank 3 of 4 checksum 1\n" +
			"rtrain: warning: rank 2 finished, then crashed as Python shut down: killed by signal 6 (aborted)\n", crashed: true, agreed: true},
	} {
		t.Run(name, func(t *testing.T) {
			crashed, agreed := parseSoak(tc.out)
			if crashed != tc.crashed || agreed != tc.agreed {
				t.Errorf("parseSoak = crashed %v, agreed %v; want %v, %v", crashed, agreed, tc.crashed, tc.agreed)
			}
		})
	}
}
