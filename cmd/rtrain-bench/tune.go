package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rtrain/rtrain/internal/pyenv"
)

const tuneScript = "cmd/rtrain-bench/bench_tune.py"

type tuneOptions struct {
	rounds int
	trials int
	length time.Duration
	cpus   int
	rtrain string
	python string // the venv is made from it
}

// tuneSweep is one run of the sweep: fit()'s wall time, the CPU time of
// the sweep's processes (the driver, its cluster, the trials: all waited
// for) and of the whole machine over the process's life, and each
// trial's start latency.
type tuneSweep struct {
	fit, took      time.Duration
	cpuJob, cpuAll time.Duration
	latency, wave  []time.Duration
	trials, errors int
}

// runTune runs the sweep o.rounds times and `rtrain fit` of a one-line
// script as often, alternating, and renders their section.
func runTune(ctx context.Context, o tuneOptions, log *slog.Logger) (section, error) {
	tmp, bin, env, err := wheelEnv("sweep", o.rtrain, o.python, log)
	if err != nil {
		return section{}, err
	}
	defer os.RemoveAll(tmp)
	script, _ := filepath.Abs(tuneScript)
	var sweeps []tuneSweep
	var fits []time.Duration
	for round := range o.rounds {
		s, err := runSweep(ctx, o, env, script, filepath.Join(tmp, fmt.Sprintf("sweep-%d", round)))
		if err != nil {
			return section{}, err
		}
		sweeps = append(sweeps, s)
		log.Info("sweep", "round", round+1, "fit", s.fit.Round(time.Millisecond), "ratio", fmt.Sprintf("%.3f", tuneRatio(o, s.fit)),
			"latency", summarize(s.latency).median.Round(time.Millisecond))
		// rtrain fit's start latency, a few times a round.
		for i := range 5 {
			d, err := fitLatency(ctx, bin, env, script, filepath.Join(tmp, fmt.Sprintf("fit-%d-%d", round, i)))
			if err != nil {
				return section{}, err
			}
			fits = append(fits, d)
		}
	}
	return renderTune(tuneReport{
		measured: measuredLine(o.rounds, torchVersion(env.Python)),
		version:  env.Version,
		o:        o,
		cores:    runtime.NumCPU(),
	}, sweeps, fits), nil
}

// tuneRatio is Ray's scalability figure: wall time over the least a
// perfect runner needs, trials × length ÷ concurrency.
func tuneRatio(o tuneOptions, fit time.Duration) float64 {
	least := float64(o.trials) * o.length.Seconds() / float64(o.cpus)
	return fit.Seconds() / least
}

func runSweep(ctx context.Context, o tuneOptions, env *pyenv.Env, script, dir string) (tuneSweep, error) {
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return tuneSweep{}, err
	}
	cmd := exec.CommandContext(ctx, env.Python, script, "sweep")
	cmd.Dir = dir
	cmd.Env = append(env.Env(), "HOME="+home, "BENCH_STORAGE="+filepath.Join(dir, "storage"),
		"BENCH_TRIALS="+strconv.Itoa(o.trials), "BENCH_CPUS="+strconv.Itoa(o.cpus),
		"BENCH_LENGTH="+strconv.FormatFloat(o.length.Seconds(), 'f', -1, 64))
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	all0 := machineCPU()
	t0 := time.Now()
	err := cmd.Run()
	s := tuneSweep{took: time.Since(t0), cpuAll: machineCPU() - all0}
	if err != nil {
		return tuneSweep{}, fmt.Errorf("sweep: %w\n%s", err, lastLines(errOut.String(), 30))
	}
	s.cpuJob = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var got struct {
		Fit     float64   `json:"fit"`
		Trials  int       `json:"trials"`
		Errors  int       `json:"errors"`
		Latency []float64 `json:"latency"`
		Wave    []float64 `json:"wave"`
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		return tuneSweep{}, fmt.Errorf("sweep printed no result: %w\n%s", err, lastLines(out.String(), 10))
	}
	if got.Errors > 0 || got.Trials != o.trials || len(got.Latency) != o.trials {
		return tuneSweep{}, fmt.Errorf("sweep: %d trials, %d errors, %d latencies, want %d trials and no error\n%s",
			got.Trials, got.Errors, len(got.Latency), o.trials, lastLines(errOut.String(), 30))
	}
	s.fit, s.trials, s.errors = secs(got.Fit), got.Trials, got.Errors
	for _, l := range got.Latency {
		s.latency = append(s.latency, secs(l))
	}
	for _, l := range got.Wave {
		s.wave = append(s.wave, secs(l))
	}
	return s, nil
}

// fitLatency is `rtrain fit --workers 1`'s start latency: from its exec
// to the script's first line.
func fitLatency(ctx context.Context, bin string, env *pyenv.Env, script, dir string) (time.Duration, error) {
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, bin, "fit", "--workers", "1", "--python", env.Python, "--progress", "plain",
		"--storage", filepath.Join(dir, "storage"), "--name", "first", script, "first")
	cmd.Env = append(env.Env(), "HOME="+home)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("rtrain fit: %w\n%s", err, lastLines(string(out), 20))
	}
	_, rest, ok := strings.Cut(string(out), "BENCH first ")
	if !ok {
		return 0, fmt.Errorf("rtrain fit: no stamp in\n%s", lastLines(string(out), 20))
	}
	f := strings.Fields(rest)
	sec, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("rtrain fit: bad stamp %q: %w", f[0], err)
	}
	return time.Unix(0, int64(sec*1e9)).Sub(t0), nil
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
