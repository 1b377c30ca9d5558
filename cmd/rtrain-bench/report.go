package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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

// ratioRow is one bar group of the chart.
type ratioRow struct {
	label               string
	vsTorchrun, vsFloor float64
}

func writeReport(o launchOptions, samples map[key][]sample) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`go run ./cmd/rtrain-bench`) on %s. Do not edit by hand.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %d cores (%s), %s, torch %s. ", runtime.NumCPU(), cpuModel(), goVersionLine(), torchVersion(o.python))
	fmt.Fprintf(&b, "Every figure is the median of %d runs, p95 in parentheses; within each round the contenders run one after another in a random order, so drift on a noisy machine hits all of them alike.\n\n", o.rounds)

	fmt.Fprintf(&b, "## Launch overhead\n\n")
	fmt.Fprintf(&b, "The same torch.distributed script (`%s`: DDP on gloo, CPU, 5 steps of a small model) launched three ways: `rtrain fit`, Debian's torchrun 1.13 (through `scripts/torchrun311.py`, which only patches its Python 3.11 start-up bug), and the floor — the workers started by hand with the env contract set, which no launcher can beat. \"First step\" is the wall-clock time rank 0 finished its first optimizer step, measured from the moment the launch command was started.\n\n", script)
	fmt.Fprintf(&b, "| workers | measure | rtrain | torchrun | floor | rtrain / torchrun | rtrain / floor |\n|---|---|---|---|---|---|---|\n")
	var rows []ratioRow
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
			rows = append(rows, ratioRow{label: fmt.Sprintf("%d w, %s", n, strings.TrimPrefix(m.name, "submit → ")), vsTorchrun: vsT, vsFloor: vsF})
		}
	}
	fmt.Fprintf(&b, "\nGoals (issue: benchmarks): rtrain / torchrun ≤ 1.05 for 4 workers end to end, and rtrain within 10%% of the floor (ratio ≤ 1.10).\n\n")
	fmt.Fprintf(&b, "![rtrain's launch time as a ratio of torchrun's and of the floor](bench-launch.svg)\n\n")
	fmt.Fprintf(&b, "Why rtrain starts faster than torchrun: torchrun's agent imports torch (about a second here) before it starts a worker, while rtrain is a Go binary that checks for torch without importing it and starts the workers at once; the workers then import torch in parallel in both cases.\n")

	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "BENCHMARKS.md"), b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(o.out, "bench-launch.svg"), ratioChart(rows), 0o644)
}

func fmtStats(s stats) string {
	return fmt.Sprintf("%.2f s (%.2f)", s.median.Seconds(), s.p95.Seconds())
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func goVersionLine() string { return runtime.Version() }

func torchVersion(python string) string {
	out, err := exec.Command(python, "-c", "import torch; print(torch.__version__)").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// ratioChart draws the ratios as horizontal bars with a line at 1.0.
func ratioChart(rows []ratioRow) []byte {
	const (
		left, barH, gap, width = 150, 14, 10, 640
		scaleMax               = 1.5
	)
	plotW := float64(width - left - 20)
	height := 40 + len(rows)*(2*barH+gap) + 40
	x := func(r float64) float64 { return left + plotW*min(r, scaleMax)/scaleMax }
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="18" font-size="13">rtrain launch time ÷ anchor (median; lower is better)</text>`+"\n", left)
	y := 34
	for _, r := range rows {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-6, y+barH+3, r.label)
		for i, v := range []float64{r.vsTorchrun, r.vsFloor} {
			color := []string{"#4c78a8", "#f58518"}[i]
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/><text x="%.1f" y="%d">%.2f</text>`+"\n",
				left, y, x(v)-left, barH-1, color, x(v)+3, y+barH-3, v)
			y += barH
		}
		y += gap
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="28" x2="%.1f" y2="%d" stroke="black" stroke-dasharray="3,3"/><text x="%.1f" y="%d" text-anchor="middle">1.0</text>`+"\n", x(1), x(1), y, x(1), y+12)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="#4c78a8"/><text x="%d" y="%d">÷ torchrun</text>`, left, y+20, left+14, y+29)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="#f58518"/><text x="%d" y="%d">÷ floor (workers started by hand)</text>`+"\n", left+100, y+20, left+114, y+29)
	b.WriteString("</svg>\n")
	return b.Bytes()
}
