package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
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

const driverScript = "cmd/rtrain-bench/bench_driver.py"

// driverWorkers is the job's size, the issue's.
const driverWorkers = 4

type driverOptions struct {
	rounds int
	rtrain string
	python string // the venv is made from it
}

// The two ways to run the job, by key.
const (
	drvFit    = "fit"    // rtrain fit --workers 4 bench_driver.py
	drvDriver = "driver" // python bench_driver.py driver: TorchTrainer.fit()
)

// driverRun is one run of the job: its wall time from the process's start
// to its exit, the CPU time its processes and the whole machine used
// meanwhile, and when the script's events came (bench_driver.py's
// stamps), since the start.
type driverRun struct {
	took, cpuJob, cpuAll time.Duration
	at                   map[string]time.Duration
}

// driverProbe is what the driver does before `rtrain fit` starts, timed
// apart in fresh interpreters.
type driverProbe struct {
	interpreter time.Duration // python -c pass, start to exit
	imports     time.Duration // import rtrain.torch
	torch       time.Duration // import torch after it: what rtrain.torch left
	pickle      time.Duration // cloudpickle of the function and its config
	version     time.Duration // the bundled binary's version check
}

// driverBench is a run of the benchmark: the venv with the wheel of the
// binary under test, and the directory each run's files go under.
type driverBench struct {
	o      driverOptions
	env    *pyenv.Env
	bin    string // the rtrain binary, absolute
	script string
	tmp    string
	runs   int // runs so far, for fresh run names
}

// runDriver runs the same job through TorchTrainer.fit() and through
// rtrain fit, in a random order every round, and renders their section.
func runDriver(ctx context.Context, o driverOptions, log *slog.Logger) (section, error) {
	tmp, bin, env, err := wheelEnv("driver", o.rtrain, o.python, log)
	if err != nil {
		return section{}, err
	}
	defer os.RemoveAll(tmp)
	script, _ := filepath.Abs(driverScript)
	b := &driverBench{o: o, env: env, bin: bin, script: script, tmp: tmp}

	variants := []string{drvFit, drvDriver}
	// One warm-up run of each, unmeasured: page cache and pyc files.
	for _, v := range variants {
		if _, err := b.runOnce(ctx, v); err != nil {
			return section{}, err
		}
	}
	runs := map[string][]driverRun{}
	var probes []driverProbe
	for round := range o.rounds {
		for _, i := range rand.Perm(len(variants)) {
			v := variants[i]
			r, err := b.runOnce(ctx, v)
			if err != nil {
				return section{}, err
			}
			runs[v] = append(runs[v], r)
			job, other := driverBusy([]driverRun{r})
			log.Info("run", "round", round+1, "variant", v, "took", r.took.Round(time.Millisecond), "body", r.at["body"].Round(time.Millisecond),
				"busy_job", fmt.Sprintf("%.2f", job), "busy_other", fmt.Sprintf("%.2f", other))
		}
		p, err := b.probe(ctx)
		if err != nil {
			return section{}, err
		}
		probes = append(probes, p)
	}
	return renderDriver(driverReport{
		measured: measuredLine(o.rounds, torchVersion(env.Python)),
		version:  env.Version,
		rounds:   o.rounds,
		cores:    runtime.NumCPU(),
	}, runs, probes), nil
}

// wheelEnv makes a scratch directory for a benchmark (the caller removes
// it) and, in it, a venv made from python with the wheel of the rtrain
// binary under test installed; bin is that binary's absolute path.
func wheelEnv(name, rtrain, python string, log *slog.Logger) (tmp, bin string, env *pyenv.Env, err error) {
	if tmp, err = os.MkdirTemp("", "rtrain-bench-"+name+"-"); err != nil {
		return "", "", nil, err
	}
	bin, _ = filepath.Abs(rtrain)
	if env, err = pyenv.Install(filepath.Join(tmp, "py"), python, bin); err != nil {
		os.RemoveAll(tmp)
		return "", "", nil, err
	}
	log.Info("wheel installed", "version", env.Version, "venv", filepath.Dir(env.Bin), "took", env.Took.Round(time.Millisecond))
	return tmp, bin, env, nil
}

// runOnce runs the job once as variant v, in a fresh directory: its
// storage, its run name and HOME (where rtrain keeps the logs) its own.
func (b *driverBench) runOnce(ctx context.Context, v string) (driverRun, error) {
	b.runs++
	dir := filepath.Join(b.tmp, fmt.Sprintf("run-%d-%s", b.runs, v))
	home, storage, stamps := filepath.Join(dir, "home"), filepath.Join(dir, "storage"), filepath.Join(dir, "stamps")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return driverRun{}, err
	}
	name := fmt.Sprintf("bench-driver-%d", b.runs)
	var cmd *exec.Cmd
	switch v {
	case drvFit:
		cmd = exec.CommandContext(ctx, b.bin, "fit", "--workers", strconv.Itoa(driverWorkers), "--python", b.env.Python,
			"--progress", "plain", "--storage", storage, "--name", name, b.script)
	case drvDriver:
		cmd = exec.CommandContext(ctx, b.env.Python, b.script, "driver")
	default:
		return driverRun{}, fmt.Errorf("no variant %q", v)
	}
	cmd.Env = append(b.env.Env(), "HOME="+home, "BENCH_STAMPS="+stamps, "BENCH_STORAGE="+storage, "BENCH_RUN="+name)
	// Stopped as a user's Ctrl-C would: rtrain fit, or the driver's, stops
	// the workers.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 15 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	all0 := machineCPU()
	t0 := time.Now()
	err := cmd.Run()
	r := driverRun{took: time.Since(t0), cpuAll: machineCPU() - all0}
	if err != nil {
		return driverRun{}, fmt.Errorf("%s: %w\n%s", v, err, lastLines(out.String(), 30))
	}
	// The process's usage holds its descendants' that it waited for: the
	// agent's workers, the driver's rtrain fit.
	r.cpuJob = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	data, err := os.ReadFile(stamps)
	if err != nil {
		return driverRun{}, fmt.Errorf("%s: no stamps: %w\n%s", v, err, lastLines(out.String(), 30))
	}
	if r.at, err = parseDriverStamps(string(data), t0); err != nil {
		return driverRun{}, fmt.Errorf("%s: %w", v, err)
	}
	for _, e := range []string{"body", "done"} {
		if _, ok := r.at[e]; !ok {
			return driverRun{}, fmt.Errorf("%s: no %s stamp in %q", v, e, data)
		}
	}
	return r, os.RemoveAll(dir)
}

// parseDriverStamps reads bench_driver.py's "EVENT UNIX_TIME" lines into
// each event's time since t0.
func parseDriverStamps(data string, t0 time.Time) (map[string]time.Duration, error) {
	at := map[string]time.Duration{}
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("bad stamp %q", sc.Text())
		}
		sec, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return nil, fmt.Errorf("bad stamp %q: %w", sc.Text(), err)
		}
		at[f[0]] = time.Unix(0, int64(sec*1e9)).Sub(t0)
	}
	return at, nil
}

// probe times the driver's steps before `rtrain fit` starts: a bare
// interpreter's start, then bench_driver.py's probe in a fresh one.
func (b *driverBench) probe(ctx context.Context) (driverProbe, error) {
	env := append(b.env.Env(), "HOME="+b.tmp)
	bare := exec.CommandContext(ctx, b.env.Python, "-c", "pass")
	bare.Env = env
	t0 := time.Now()
	if out, err := bare.CombinedOutput(); err != nil {
		return driverProbe{}, fmt.Errorf("python -c pass: %w\n%s", err, out)
	}
	p := driverProbe{interpreter: time.Since(t0)}
	cmd := exec.CommandContext(ctx, b.env.Python, b.script, "probe")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return driverProbe{}, fmt.Errorf("probe: %w\n%s", err, out)
	}
	got := map[string]*time.Duration{"import": &p.imports, "torch": &p.torch, "pickle": &p.pickle, "version": &p.version}
	n, err := parseBenchLines(string(out), got)
	if err != nil {
		return driverProbe{}, fmt.Errorf("probe: %w", err)
	}
	if n != len(got) {
		return driverProbe{}, fmt.Errorf("probe printed %d of its %d figures:\n%s", n, len(got), out)
	}
	return p, nil
}

// parseBenchLines sets the durations that "BENCH NAME SECONDS" lines
// name, and says how many lines it read.
func parseBenchLines(out string, into map[string]*time.Duration) (int, error) {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		name, d, ok, err := benchLine(sc.Text())
		if err != nil {
			return n, err
		}
		if p, want := into[name]; ok && want {
			*p = d
			n++
		}
	}
	return n, nil
}
