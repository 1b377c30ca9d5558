package main

import (
	"fmt"
	"strings"
	"time"
)

const driverHeading = "Driver overhead (TorchTrainer.fit() against rtrain fit of the same job)"

// driverGoal is the goal: the driver adds at most this share to
// the job's time end to end.
const driverGoal = 0.05

// driverReport is what the driver section says besides the runs.
type driverReport struct {
	measured string // the section's first line
	version  string // of the binary under test, which the wheel carries
	rounds   int
	cores    int
}

// drvPhase is a stretch of a run between two of its events: "" is the
// process's start, "exit" its exit, the others bench_driver.py's stamps.
type drvPhase struct {
	name     string
	from, to string
}

// drvLaunched is the event the job's own start is counted from: fit()
// called in the driver, the process's start for rtrain fit.
const drvLaunched = "launched"

var drvPhases = []drvPhase{
	{"interpreter start: → the driver's first line", "", "start"},
	{"imports (`rtrain`, `rtrain.torch`): → `fit()` called", "start", "fit"},
	{"the job's start: → the train function's first line on rank 0 (for the driver: serializing the function, the version check, then `rtrain fit`'s own start: the workers', their imports, the process group)", drvLaunched, "body"},
	{"the train function, on rank 0", "body", "done"},
	{"teardown: → exit (the process group, the workers, the result)", "done", "exit"},
	{"end to end", "", "exit"},
}

// when is when event e of r came, since the process's start; ok is false
// where the run has no such event.
func (r driverRun) when(e string) (time.Duration, bool) {
	switch e {
	case "":
		return 0, true
	case "exit":
		return r.took, true
	case drvLaunched:
		if t, ok := r.at["fit"]; ok {
			return t, true
		}
		return 0, true
	}
	t, ok := r.at[e]
	return t, ok
}

// of is p's duration in each run that has both its ends; ok is false
// where none has.
func (p drvPhase) of(runs []driverRun) (stats, bool) {
	var ds []time.Duration
	for _, r := range runs {
		a, okA := r.when(p.from)
		b, okB := r.when(p.to)
		if okA && okB {
			ds = append(ds, b-a)
		}
	}
	if len(ds) == 0 {
		return stats{}, false
	}
	return summarize(ds), true
}

// driverBusy is the median of the cores a variant's runs kept busy: its
// processes and everything else on the machine.
func driverBusy(runs []driverRun) (job, other float64) {
	j, o := make([]float64, len(runs)), make([]float64, len(runs))
	for i, r := range runs {
		j[i] = r.cpuJob.Seconds() / r.took.Seconds()
		o[i] = max(0, (r.cpuAll-r.cpuJob).Seconds()/r.took.Seconds())
	}
	return median(j), median(o)
}

func driverTook(runs []driverRun) []time.Duration {
	ds := make([]time.Duration, len(runs))
	for i, r := range runs {
		ds[i] = r.took
	}
	return ds
}

func medianOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return summarize(ds).median
}

// renderDriver is the driver section.
func renderDriver(r driverReport, runs map[string][]driverRun, probes []driverProbe) section {
	fit, drv := runs[drvFit], runs[drvDriver]
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", r.measured)
	worst := ""
	if r.rounds < 20 {
		worst = fmt.Sprintf(" (with %d rounds, p95 is the slowest run)", r.rounds)
	}
	fmt.Fprintf(&b, "The same %d-worker job run two ways: `rtrain fit --workers %d %s`, and `python %s driver`, whose `TorchTrainer(train_func, scaling_config=ScalingConfig(num_workers=%d), train_loop_config=...).fit()` serializes the function and runs the `rtrain fit --function` of the binary the wheel carries. "+
		"One `train_func` serves both (the script calls it with the same config): DDP on gloo (CPU), a small MLP, 200 steps of an all-reduce each and an `rtrain.report` every 20. "+
		"The wheel is built from the binary under test (%s) by `scripts/build-wheel.py` and pip-installed into a venv with the system's site-packages (torch, cloudpickle); both variants run that venv's python, with a fresh directory as storage, a fresh run name and HOME. "+
		"Times are from the start of the command to its exit%s; the script's rank 0 and the driver stamp their events with the wall clock.\n\n",
		driverWorkers, driverWorkers, driverScript, driverScript, driverWorkers, r.version, worst)

	f, d := summarize(driverTook(fit)), summarize(driverTook(drv))
	overhead := d.median.Seconds()/f.median.Seconds() - 1
	fj, fo := driverBusy(fit)
	dj, do := driverBusy(drv)
	fmt.Fprintf(&b, "| variant | end to end | ÷ rtrain fit | cores busy: job + other |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| `rtrain fit` | %s | 1.00 | %.2f + %.2f |\n", fmtStats(f), fj, fo)
	fmt.Fprintf(&b, "| `TorchTrainer.fit()` | %s | %.2f | %.2f + %.2f |\n", fmtStats(d), 1+overhead, dj, do)
	fmt.Fprintf(&b, "\n\"Cores busy\" is the CPU time used during the run over its wall time (median): by the job's processes (the workers, `rtrain fit`, and the driver where there is one) and by everything else on the machine, out of its %d cores.", r.cores)
	if other := max(fo, do); other >= 0.25 {
		fmt.Fprintf(&b, " Other work on the machine took %.2f of them during these runs, so their times spread more than the job's own would.", other)
	}
	b.WriteString("\n")
	// Within each round, the two ran one after the other: the median of
	// the rounds' own ratios leaves out drift from round to round.
	// (pairedRatio's anchor over its contender: the driver's over rtrain fit's.)
	paired := pairedRatio(driverTook(fit), driverTook(drv)) - 1
	fmt.Fprintf(&b, "\nGoal (issue: Python driver): the driver's overhead, median(`TorchTrainer.fit()`) ÷ median(`rtrain fit`) − 1, ≤ %.0f%% end to end (Ray Train's own release gate allows 15%% over plain torch). This run: %+.1f%% (%s). The median of the rounds' own ratios, which drift from round to round (other work on the machine, say) cancels out of: %+.1f%%.\n\n",
		driverGoal*100, overhead*100, yesNo(overhead <= driverGoal), paired*100)

	fmt.Fprintf(&b, "Where the time goes (each phase's median, p95 in parentheses; the phases' medians need not add up to the total's):\n\n")
	fmt.Fprintf(&b, "| phase | rtrain fit | TorchTrainer.fit() | difference |\n|---|---|---|---|\n")
	for _, p := range drvPhases {
		a, okA := p.of(fit)
		c, okC := p.of(drv)
		if !okA && !okC {
			continue
		}
		cell := func(s stats, ok bool) string {
			if !ok {
				return "—"
			}
			return fmtStats(s)
		}
		var diff time.Duration
		if okC {
			diff += c.median
		}
		if okA {
			diff -= a.median
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %+.2f s |\n", p.name, cell(a, okA), cell(c, okC), diff.Seconds())
	}

	pr := map[string][]time.Duration{}
	for _, p := range probes {
		pr["interpreter"] = append(pr["interpreter"], p.interpreter)
		pr["import"] = append(pr["import"], p.imports)
		pr["torch"] = append(pr["torch"], p.torch)
		pr["pickle"] = append(pr["pickle"], p.pickle)
		pr["version"] = append(pr["version"], p.version)
	}
	ms := func(k string) float64 { return float64(medianOf(pr[k])) / 1e6 }
	fmt.Fprintf(&b, "\nThe driver's steps before `rtrain fit` starts, timed apart once a round in fresh interpreters (medians): a bare interpreter's start and exit (`python -c pass`) %.0f ms; `import rtrain.torch` %.0f ms; serializing the train function and its config with cloudpickle %.1f ms; the check that the bundled binary is the package's version (`rtrain version`, once a process) %.1f ms. "+
		"`%s`'s driver never imports torch (its train function does, on the workers); one whose own module does, to define its model say, pays `import torch`, %.0f ms here, before the job starts, and more to unload it at its exit, on top of these.\n",
		ms("interpreter"), ms("import"), ms("pickle"), ms("version"), driverScript, ms("torch"))
	return section{heading: driverHeading, body: b.String()}
}
