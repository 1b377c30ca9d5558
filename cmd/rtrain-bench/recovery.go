package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rtrain/rtrain/rendezvous"
)

const recoveryHeading = "Recovery time (worker death → first step after restore)"

const recoveryScript = "cmd/rtrain-bench/bench_recovery.py"

// recoveryResumeStep is the step the restarted attempt must resume at:
// the script's CKPT_STEP + 1.
const recoveryResumeStep = 6

// Goals (issue: recovery).
const (
	recoveryGoalDetect   = time.Second
	recoveryGoalOverhead = 2 * time.Second
)

// torchrunMonitorInterval is torchrun's default --monitor_interval: how
// often its agent looks at its workers.
const torchrunMonitorInterval = 5 * time.Second

type recoveryOptions struct {
	rounds int
	rtrain string
	python string
}

// timedLine is a line of a launcher's output and when it was read.
type timedLine struct {
	at   time.Time
	text string
}

// recContender is a launcher that restarts the job after the crash.
type recContender struct {
	name string
	// detected matches the launcher's line saying a worker failed;
	// restarting its line saying it restarts, nil if it has none apart.
	detected, restarting *regexp.Regexp
	// command runs the job with its files in dir, rank 1 dying delay
	// after it reaches the step it dies at.
	command func(ctx context.Context, dir string, delay time.Duration) (*exec.Cmd, error)
}

func recContenders(o recoveryOptions) []recContender {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	rtrainBin, torchrun, job := abs(o.rtrain), abs("scripts/torchrun311.py"), abs(recoveryScript)
	env := func(dir string, delay time.Duration) []string {
		return append(os.Environ(), "BENCH_STAMPS="+filepath.Join(dir, "stamps"), "BENCH_CKPT="+filepath.Join(dir, "ckpt.pt"),
			fmt.Sprintf("BENCH_KILL_DELAY=%.3f", delay.Seconds()))
	}
	return []recContender{
		{
			name:       "rtrain",
			detected:   regexp.MustCompile(`^rtrain: rank \d+ \(pid \d+\) failed: `),
			restarting: regexp.MustCompile(`^rtrain: attempt 1: `),
			command: func(ctx context.Context, dir string, delay time.Duration) (*exec.Cmd, error) {
				cmd := exec.CommandContext(ctx, rtrainBin, "fit", "--workers", "2", "--max-failures", "1", "--results-dir", dir, "--python", o.python, job)
				cmd.Env = env(dir, delay)
				return cmd, nil
			},
		},
		{
			name:     "torchrun",
			detected: regexp.MustCompile(`multiprocessing\.api:failed \(exitcode`),
			command: func(ctx context.Context, dir string, delay time.Duration) (*exec.Cmd, error) {
				port, err := rendezvous.FreePort(ctx, "127.0.0.1")
				if err != nil {
					return nil, err
				}
				cmd := exec.CommandContext(ctx, o.python, torchrun, "--nproc_per_node", "2", "--max_restarts", "1", "--master_port", strconv.Itoa(port), job)
				cmd.Env = env(dir, delay)
				cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
				return cmd, nil
			},
		},
	}
}

// recoveryRun is one crash and recovery: when each thing happened. The
// restarted attempt's times are its slowest rank's.
type recoveryRun struct {
	death, detected, restarting          time.Time // restarting: zero where the launcher has no line for it
	start, imported, ready, loaded, step time.Time
}

// phase is a part of a recovery; ok is false where a run cannot say.
type phase struct {
	name, short string // short: the chart's label
	of          func(recoveryRun) (time.Duration, bool)
}

func between(a, b func(recoveryRun) time.Time) func(recoveryRun) (time.Duration, bool) {
	return func(r recoveryRun) (time.Duration, bool) {
		x, y := a(r), b(r)
		return y.Sub(x), !x.IsZero() && !y.IsZero()
	}
}

var (
	atDeath      = func(r recoveryRun) time.Time { return r.death }
	atDetected   = func(r recoveryRun) time.Time { return r.detected }
	atRestarting = func(r recoveryRun) time.Time { return r.restarting }
	atStart      = func(r recoveryRun) time.Time { return r.start }
	atImported   = func(r recoveryRun) time.Time { return r.imported }
	atReady      = func(r recoveryRun) time.Time { return r.ready }
	atLoaded     = func(r recoveryRun) time.Time { return r.loaded }
	atStep       = func(r recoveryRun) time.Time { return r.step }
)

const (
	phaseDetect   = "detection: death → the launcher reports the failure"
	phaseTotal    = "total: death → first step done"
	phaseOverhead = "total less interpreter start (importing torch) and checkpoint load"
)

var phases = []phase{
	{phaseDetect, "detection", between(atDeath, atDetected)},
	{"restart: → the restarted script's first line (teardown, placement, process start)", "restart", between(atDetected, atStart)},
	{"import torch", "import torch", between(atStart, atImported)},
	{"`init_process_group`", "init_process_group", between(atImported, atReady)},
	{"checkpoint load", "checkpoint load", between(atReady, atLoaded)},
	{"first step (DDP set-up and one step)", "first step", between(atLoaded, atStep)},
	{phaseTotal, "total", between(atDeath, atStep)},
	{phaseOverhead, "overhead", func(r recoveryRun) (time.Duration, bool) {
		return r.step.Sub(r.death) - r.imported.Sub(r.start) - r.loaded.Sub(r.ready), true
	}},
}

// rtrain's restart, split by its "attempt 1" line.
var (
	phaseTeardown = phase{"teardown", "teardown", between(atDetected, atRestarting)}
	phasePlace    = phase{"placement and process start", "placement", between(atRestarting, atStart)}
)

// runRecovery crashes a rank of the same job under each contender, in a
// random order every round, and times the recovery.
func runRecovery(ctx context.Context, o recoveryOptions, log *slog.Logger) (section, error) {
	cs := recContenders(o)
	runs := map[string][]recoveryRun{}
	for round := range o.rounds {
		// The same death for both, at a random point of a monitor interval.
		delay := rand.N(torchrunMonitorInterval)
		for _, i := range rand.Perm(len(cs)) {
			c := cs[i]
			r, err := recoverOnce(ctx, c, delay)
			if err != nil {
				return section{}, fmt.Errorf("%s: %w", c.name, err)
			}
			runs[c.name] = append(runs[c.name], r)
			log.Info("run", "round", round+1, "contender", c.name, "detect", r.detected.Sub(r.death).Round(time.Millisecond), "total", r.step.Sub(r.death).Round(time.Millisecond))
		}
	}
	return renderRecovery(o, measuredLine(o.rounds, torchVersion(o.python)), runs), nil
}

// recoverOnce runs the job once under c, timestamping every line of c's
// output as it is read.
func recoverOnce(ctx context.Context, c recContender, delay time.Duration) (recoveryRun, error) {
	dir, err := os.MkdirTemp("", "rtrain-bench-recovery-")
	if err != nil {
		return recoveryRun{}, err
	}
	defer os.RemoveAll(dir)
	cmd, err := c.command(ctx, dir, delay)
	if err != nil {
		return recoveryRun{}, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return recoveryRun{}, err
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return recoveryRun{}, err
	}
	var lines []timedLine
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		lines = append(lines, timedLine{time.Now(), sc.Text()})
	}
	if err := cmd.Wait(); err != nil {
		return recoveryRun{}, fmt.Errorf("%w\n%s", err, joinLines(lines))
	}
	stamps, err := os.ReadFile(filepath.Join(dir, "stamps"))
	if err != nil {
		return recoveryRun{}, err
	}
	r, err := parseRecovery(string(stamps), lines, c)
	if err != nil {
		return recoveryRun{}, fmt.Errorf("%w\n%s", err, joinLines(lines))
	}
	return r, nil
}

func joinLines(lines []timedLine) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

// parseRecovery builds a run's timeline from the script's stamps ("EVENT
// RANK ATTEMPT UNIX_TIME [EXTRA]") and the launcher's lines.
func parseRecovery(stamps string, lines []timedLine, c recContender) (recoveryRun, error) {
	var r recoveryRun
	restarted := map[string]*time.Time{"start": &r.start, "imported": &r.imported, "ready": &r.ready, "loaded": &r.loaded, "step": &r.step}
	for _, line := range strings.Split(strings.TrimSpace(stamps), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			return r, fmt.Errorf("bad stamp %q", line)
		}
		attempt, err1 := strconv.Atoi(f[2])
		secs, err2 := strconv.ParseFloat(f[3], 64)
		if err1 != nil || err2 != nil {
			return r, fmt.Errorf("bad stamp %q", line)
		}
		at := time.Unix(0, int64(secs*1e9))
		switch {
		case f[0] == "death" && attempt == 0:
			r.death = at
		case attempt == 1 && restarted[f[0]] != nil:
			if f[0] == "loaded" && (len(f) < 5 || f[4] != strconv.Itoa(recoveryResumeStep)) {
				return r, fmt.Errorf("the restarted attempt did not resume from the checkpoint: %q", line)
			}
			if t := restarted[f[0]]; at.After(*t) {
				*t = at
			}
		}
	}
	for _, l := range lines {
		if r.detected.IsZero() && c.detected.MatchString(l.text) {
			r.detected = l.at
		}
		if r.restarting.IsZero() && c.restarting != nil && c.restarting.MatchString(l.text) {
			r.restarting = l.at
		}
	}
	missing := []string{}
	for name, t := range map[string]time.Time{"death": r.death, "failure line": r.detected, "restarted start": r.start, "imported": r.imported, "ready": r.ready, "loaded": r.loaded, "step": r.step} {
		if t.IsZero() {
			missing = append(missing, name)
		}
	}
	if c.restarting != nil && r.restarting.IsZero() {
		missing = append(missing, "restart line")
	}
	if len(missing) > 0 {
		return r, fmt.Errorf("no %s in the stamps and output", strings.Join(missing, ", "))
	}
	return r, nil
}

// phaseStats summarizes one phase over runs.
func phaseStats(p phase, runs []recoveryRun) (stats, bool) {
	var ds []time.Duration
	for _, r := range runs {
		if d, ok := p.of(r); ok {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		return stats{}, false
	}
	return summarize(ds), true
}

func renderRecovery(o recoveryOptions, measured string, runs map[string][]recoveryRun) section {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", measured)
	fmt.Fprintf(&b, "The same crash under `rtrain fit --workers 2 --max-failures 1` and Debian's torchrun (`--nproc_per_node 2 --max_restarts 1`, through `scripts/torchrun311.py`; its default `--monitor_interval` of 5 s). `%s` trains a small model with DDP on gloo (CPU), checkpoints at step 5 (through `rtrain.report` under rtrain, `torch.save` to a local file under torchrun), and in the first attempt rank 1 SIGKILLs itself at step 25, after a random wait of 0–5 s (one per round, the same for both launchers) so that the death falls anywhere in torchrun's monitor interval. Both launchers stop the other rank and start both again; the restarted attempt loads the checkpoint (under rtrain `rtrain.get_checkpoint()`, which rtrain has restored from storage before the restart) and takes one step. The script writes the time of the death and, in the restarted attempt, of each stage (the slowest rank's); the launchers' lines are timestamped as this benchmark reads them: the failure (rtrain: `rank 1 (pid N) failed`, torchrun: `failed (exitcode ...)`) and rtrain's `attempt 1`. Medians of each phase, p95 in parentheses; the phases' medians need not add up to the total's.\n\n", recoveryScript)
	fmt.Fprintf(&b, "| phase | rtrain | torchrun | rtrain / torchrun |\n|---|---|---|---|\n")
	rt, tr := runs["rtrain"], runs["torchrun"]
	var rows []chartRow
	for _, p := range phases {
		a, okA := phaseStats(p, rt)
		t, okT := phaseStats(p, tr)
		if !okA || !okT {
			continue
		}
		ratio := "—"
		if t.median > 0 {
			ratio = fmt.Sprintf("%.2f", a.median.Seconds()/t.median.Seconds())
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", p.name, fmtMillis(a), fmtMillis(t), ratio)
		rows = append(rows, chartRow{label: p.short, values: []float64{a.median.Seconds(), t.median.Seconds()}})
	}
	td, _ := phaseStats(phaseTeardown, rt)
	pl, _ := phaseStats(phasePlace, rt)
	fmt.Fprintf(&b, "\nrtrain's restart, split at its `attempt 1` line: teardown (the other rank stopped, the checkpoint restored) %s, then placement and process start %s.\n", fmtMillis(td), fmtMillis(pl))
	det, _ := phaseStats(phases[0], rt)
	over, _ := phaseStats(phases[len(phases)-1], rt)
	fmt.Fprintf(&b, "\nGoals (issue: recovery): a process death detected in < %.0f s, and a total overhead beyond interpreter start and checkpoint load < %.0f s. This run: rtrain detected it in %.0f ms (%s), with %.2f s of overhead (%s).\n",
		recoveryGoalDetect.Seconds(), recoveryGoalOverhead.Seconds(), float64(det.median)/1e6, yesNo(det.median < recoveryGoalDetect), over.median.Seconds(), yesNo(over.median < recoveryGoalOverhead))
	fmt.Fprintf(&b, "\n![recovery phases, rtrain and torchrun](bench-recovery.svg)\n")
	fmt.Fprintf(&b, "\ntorchrun's agent looks at its workers once every `--monitor_interval` (5 s by default), so it notices a death anywhere from at once to 5 s later; rtrain waits on its workers' exits and notices at once. Both then pay the same Python start: importing torch dominates the rest.\n")
	top := 1.0
	for _, r := range rows {
		top = max(top, r.values[0]*1.05, r.values[1]*1.05)
	}
	c := chart{
		title:    "recovery phases in seconds (median; lower is better)",
		series:   []string{"rtrain", "torchrun"},
		rows:     rows,
		scaleMax: top,
	}
	return section{heading: recoveryHeading, body: b.String(), charts: map[string][]byte{"bench-recovery.svg": c.svg()}}
}
