package main

import (
	"fmt"
	"strings"
	"time"
)

// metric picks one duration of a sample.
type metric struct {
	name string
	of   func(sample) time.Duration
}

var metrics = []metric{
	{"submit → first step", func(s sample) time.Duration { return s.first }},
	{"submit → done", func(s sample) time.Duration { return s.done }},
}

// renderLaunch is the launch section and its chart, bench-launch.svg.
// measured is its first line (measuredLine).
func renderLaunch(o launchOptions, measured string, samples map[key][]sample) section {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", measured)
	fmt.Fprintf(&b, "The same torch.distributed script (`%s`: DDP on gloo, CPU, 5 steps of a small model) launched three ways: `rtrain fit`, Debian's torchrun 1.13 (through `scripts/torchrun311.py`, which only patches its Python 3.11 start-up bug), and the floor — the workers started by hand with the env contract set, which no launcher can beat. \"First step\" is the wall-clock time rank 0 finished its first optimizer step, measured from the moment the launch command was started.\n\n", script)
	fmt.Fprintf(&b, "| workers | measure | rtrain | torchrun | floor | rtrain / torchrun | rtrain / floor |\n|---|---|---|---|---|---|---|\n")
	var rows []chartRow
	for _, n := range o.workers {
		for _, m := range metrics {
			st := map[string]stats{}
			for _, c := range []string{"rtrain", "torchrun", "floor"} {
				var ds []time.Duration
				for _, s := range samples[key{c, n}] {
					ds = append(ds, m.of(s))
				}
				st[c] = summarize(ds)
			}
			vsT := st["rtrain"].median.Seconds() / st["torchrun"].median.Seconds()
			vsF := st["rtrain"].median.Seconds() / st["floor"].median.Seconds()
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %.2f | %.2f |\n", n, m.name, fmtStats(st["rtrain"]), fmtStats(st["torchrun"]), fmtStats(st["floor"]), vsT, vsF)
			rows = append(rows, chartRow{label: fmt.Sprintf("%d w, %s", n, strings.TrimPrefix(m.name, "submit → ")), values: []float64{vsT, vsF}})
		}
	}
	fmt.Fprintf(&b, "\nGoals (issue: benchmarks): rtrain / torchrun ≤ 1.05 for 4 workers end to end, and rtrain within 10%% of the floor (ratio ≤ 1.10).\n\n")
	fmt.Fprintf(&b, "![rtrain's launch time as a ratio of torchrun's and of the floor](bench-launch.svg)\n\n")
	fmt.Fprintf(&b, "Why rtrain starts faster than torchrun: torchrun's agent imports torch (about a second here) before it starts a worker, while rtrain is a Go binary that checks for torch without importing it and starts the workers at once; the workers then import torch in parallel in both cases.\n")
	fmt.Fprintf(&b, "\nThe race every launcher runs: torch 1.13's TCPStore client sleeps a whole second after a refused connect, so a rank that reaches `init_process_group` a moment before rank 0's store listens loses up to a second. The floor's ranks host the store in rank 0 and lose that race now and then, more often the more ranks there are; rtrain's agent, like torchrun's, hosts the store itself (`rendezvous/store`, TORCHELASTIC_USE_AGENT_STORE) and has it listening before any worker starts, so no rank waits. What rtrain adds over a bare start is its own start-up, the check that the script compiles and python has torch, and each worker's cgroup.\n\n")
	fmt.Fprintf(&b, "Every contender runs the same interpreter (`-python`, given to `rtrain fit --python`).\n")

	c := chart{
		title:    "rtrain launch time ÷ anchor (median; lower is better)",
		series:   []string{"÷ torchrun", "÷ floor (workers started by hand)"},
		rows:     rows,
		marks:    []mark{{1, "1.0"}},
		scaleMax: 1.5,
	}
	return section{heading: launchHeading, body: b.String(), charts: map[string][]byte{"bench-launch.svg": c.svg()}}
}

func fmtStats(s stats) string {
	return fmt.Sprintf("%.2f s (%.2f)", s.median.Seconds(), s.p95.Seconds())
}
