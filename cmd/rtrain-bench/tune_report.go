package main

import (
	"fmt"
	"strings"
	"time"
)

const tuneHeading = "Sweep bookkeeping (many short trials through rtrain.tune)"

// tuneGoal is the issue's: wall time at most this many times the least.
const tuneGoal = 1.05

type tuneReport struct {
	measured string
	version  string
	o        tuneOptions
	cores    int
}

func renderTune(r tuneReport, sweeps []tuneSweep, fits []time.Duration) section {
	o := r.o
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", r.measured)
	least := time.Duration(float64(o.trials) * float64(o.length) / float64(o.cpus))
	fmt.Fprintf(&b, "As Ray's own scalability test measures it (release/tune_tests/scalability_tests: 10,000 one-second trials on 16 CPUs took 715 s against a 625 s minimum, 1.14×): "+
		"`python %s sweep` runs a `Tuner` over a grid of %d trials, each a function trainable that sleeps %s and reports once, "+
		"on the sweep's own one-node cluster offering %d CPUs (`rtrain.init(num_cpus=%d)`; each trial reserves 1, Ray's default), so at most %d run at once. "+
		"The least a perfect runner needs is trials × length ÷ concurrency = %.1f s; the figure is `fit()`'s wall time over that. "+
		"The wheel is built from the binary under test (%s) and pip-installed into a venv with the system's site-packages.\n\n",
		tuneScript, o.trials, o.length, o.cpus, o.cpus, o.cpus, least.Seconds(), r.version)

	var fitTimes, lat, wave []time.Duration
	var cpuJob, cpuAll, took time.Duration
	for _, s := range sweeps {
		fitTimes = append(fitTimes, s.fit)
		lat = append(lat, s.latency...)
		wave = append(wave, s.wave...)
		cpuJob += s.cpuJob
		cpuAll += s.cpuAll
		took += s.took
	}
	f := summarize(fitTimes)
	ratio := tuneRatio(o, f.median)
	job := cpuJob.Seconds() / took.Seconds()
	other := max(0, (cpuAll-cpuJob).Seconds()/took.Seconds())
	perTrial := time.Duration(float64(cpuJob) / float64(o.trials*len(sweeps)))
	fmt.Fprintf(&b, "| trials × length | concurrency | least | `fit()` wall time | ÷ least | cores busy: sweep + other | CPU per trial |\n|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d × %s | %d | %.1f s | %s | %.2f | %.2f + %.2f | %.0f ms |\n\n",
		o.trials, o.length, o.cpus, least.Seconds(), fmtStats(f), ratio, job, other, float64(perTrial)/1e6)
	fmt.Fprintf(&b, "Goal (issue: rtrain.tune): ≤ %.2f×. This run: %.2f× (%s).", tuneGoal, ratio, yesNo(ratio <= tuneGoal))
	// The sweep's CPU alone bounds it on a small machine: every trial is
	// an rtrain fit process and a python worker.
	cpuBound := time.Duration(float64(perTrial) * float64(o.trials) / float64(r.cores))
	if cpuBound > least {
		fmt.Fprintf(&b, " On this machine the goal cannot be met: each trial costs %.0f ms of CPU (its `rtrain fit` client, the agent's cgroup and reaper, a Python worker that imports rtrain and unpickles the trainable, the report), so %d trials need %.1f s of the machine's %d cores even with nothing waiting, %.2f× the least; %d CPUs offered on %d cores is oversubscribed %.0f×. The bookkeeping itself is what the difference between that bound and the wall time leaves: %.2f× the CPU bound.",
			float64(perTrial)/1e6, o.trials, cpuBound.Seconds(), r.cores, cpuBound.Seconds()/least.Seconds(), o.cpus, r.cores, float64(o.cpus)/float64(r.cores), f.median.Seconds()/cpuBound.Seconds())
	}
	if other >= 0.25 {
		fmt.Fprintf(&b, " Other work on the machine took %.2f cores during these runs.", other)
	}
	b.WriteString("\n\n")
	l, w, fl := summarize(lat), summarize(wave), summarize(fits)
	fmt.Fprintf(&b, "Start latency (median, p95 in parentheses):\n\n| | start → first line |\n|---|---|\n")
	fmt.Fprintf(&b, "| a trial of the first wave: the runner starts its job → the trainable's first line (%d trials started together, none waiting for room) | %s |\n", len(wave), fmtStats(w))
	fmt.Fprintf(&b, "| every trial, the same (%d trials, each started as a CPU frees, on a node whose cores are saturated) | %s |\n", len(lat), fmtStats(l))
	fmt.Fprintf(&b, "| `rtrain fit --workers 1 %s first`: exec → the script's first line (%d runs, on an idle machine) | %s |\n", tuneScript, len(fits), fmtStats(fl))
	return section{heading: tuneHeading, body: b.String()}
}
