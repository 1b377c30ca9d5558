package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rtrain/rtrain/rendezvous"
)

type launchOptions struct {
	rounds  int
	workers []int
	rtrain  string
	python  string
}

// contender is one way to launch the same job.
type contender struct {
	name string
	// start launches the job with n workers, stamping into stamp; it
	// returns the command to wait for.
	start func(ctx context.Context, n int, stamp string) (*exec.Cmd, error)
}

// sample is one run: submit → first step and submit → done.
type sample struct {
	first, done time.Duration
}

const script = "scripts/bench_first_step.py"

func contenders(o launchOptions, tmp string) []contender {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	rtrainBin, torchrun, job := abs(o.rtrain), abs("scripts/torchrun311.py"), abs(script)
	env := func(stamp string) []string { return append(os.Environ(), "BENCH_STAMP="+stamp) }
	return []contender{
		{"rtrain", func(ctx context.Context, n int, stamp string) (*exec.Cmd, error) {
			cmd := exec.CommandContext(ctx, rtrainBin, "fit", "--workers", strconv.Itoa(n), "--python", o.python, "--progress", "plain", "--results-dir", tmp, job)
			cmd.Env = env(stamp)
			return cmd, cmd.Start()
		}},
		{"torchrun", func(ctx context.Context, n int, stamp string) (*exec.Cmd, error) {
			port, err := rendezvous.FreePort(ctx, "127.0.0.1")
			if err != nil {
				return nil, err
			}
			cmd := exec.CommandContext(ctx, o.python, torchrun, "--nproc_per_node", strconv.Itoa(n), "--master_port", strconv.Itoa(port), job)
			cmd.Env = env(stamp)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			return cmd, cmd.Start()
		}},
		{"floor", func(ctx context.Context, n int, stamp string) (*exec.Cmd, error) {
			// The workers started by hand with the env set: what no launcher
			// can beat. A shell starts them so there is one command to wait on.
			port, err := rendezvous.FreePort(ctx, "127.0.0.1")
			if err != nil {
				return nil, err
			}
			l := rendezvous.Layout{RunID: "floor", MasterAddr: "127.0.0.1", MasterPort: port, LocalWorldSizes: []int{n}, ThreadsPerWorker: max(runtime.NumCPU()/n, 1)}
			var sh strings.Builder
			for r := range n {
				e, err := l.WorkerEnv(nil, 0, r)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(&sh, "env %s %s %s & ", strings.Join(e, " "), o.python, job)
			}
			sh.WriteString("wait")
			cmd := exec.CommandContext(ctx, "/bin/sh", "-c", sh.String())
			cmd.Env = env(stamp)
			return cmd, cmd.Start()
		}},
	}
}

// runOnce runs one job and measures it.
func runOnce(ctx context.Context, c contender, n int, tmp string) (sample, error) {
	stamp := filepath.Join(tmp, fmt.Sprintf("stamp-%s-%d-%d", c.name, n, time.Now().UnixNano()))
	var out bytes.Buffer
	t0 := time.Now()
	cmd, err := c.start(ctx, n, stamp)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", c.name, err)
	}
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Wait()
	done := time.Since(t0)
	if err != nil {
		return sample{}, fmt.Errorf("%s with %d workers: %w\n%s", c.name, n, err, out.String())
	}
	b, err := os.ReadFile(stamp)
	if err != nil {
		return sample{}, fmt.Errorf("%s: no first-step stamp: %w", c.name, err)
	}
	sec, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return sample{}, fmt.Errorf("%s: stamp %q: %w", c.name, b, err)
	}
	first := time.Unix(0, int64(sec*1e9)).Sub(t0)
	return sample{first: first, done: done}, nil
}

type key struct {
	contender string
	workers   int
}

// runLaunch measures the launch contenders and renders their section.
func runLaunch(ctx context.Context, o launchOptions, log *slog.Logger) (section, error) {
	tmp, err := os.MkdirTemp("", "rtrain-bench-")
	if err != nil {
		return section{}, err
	}
	defer os.RemoveAll(tmp)
	cs := contenders(o, tmp)
	samples := map[key][]sample{}
	// One warm-up run of each, unmeasured: page cache and pyc files.
	for _, c := range cs {
		if _, err := runOnce(ctx, c, 1, tmp); err != nil {
			return section{}, err
		}
	}
	for round := range o.rounds {
		for _, n := range o.workers {
			order := rand.Perm(len(cs))
			for _, i := range order {
				c := cs[i]
				s, err := runOnce(ctx, c, n, tmp)
				if err != nil {
					return section{}, err
				}
				samples[key{c.name, n}] = append(samples[key{c.name, n}], s)
				log.Info("run", "round", round+1, "contender", c.name, "workers", n, "first_step", s.first.Round(time.Millisecond), "done", s.done.Round(time.Millisecond))
			}
		}
	}
	return renderLaunch(o, measuredLine(o.rounds, torchVersion(o.python)), samples), nil
}

// stats are the median and p95 of a set of durations.
type stats struct{ median, p95 time.Duration }

func summarize(ds []time.Duration) stats {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	// Nearest-rank p95: with 10 runs it is the slowest.
	i := int(0.95*float64(len(s))+0.999999) - 1
	return stats{median: med, p95: s[min(max(i, 0), len(s)-1)]}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a worker count", f)
		}
		out = append(out, n)
	}
	return out, nil
}
