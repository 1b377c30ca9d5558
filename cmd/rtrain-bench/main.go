// Command rtrain-bench runs rtrain's benchmarks against their anchors and
// writes docs/BENCHMARKS.md and a chart of the ratios per benchmark.
// `make bench` runs it.
//
// Machines are noisy, so contenders alternate within every round, each
// figure is the median (and p95) of many runs, and every figure stands next
// to its anchor measured in the same run. -only runs one benchmark and
// keeps the others' sections of the existing BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	only   string // "" for every benchmark
	out    string
	launch launchOptions
	driver driverOptions
	tune   tuneOptions
	ckpt   ckptOptions
	report reportOptions
	sched  schedOptions
	beat   heartbeatOptions
	rec    recoveryOptions
	soak   teardownOptions
	fail   failoverOptions
}

// benchmark is one section of BENCHMARKS.md, by its -only name.
type benchmark struct {
	name string
	run  func(ctx context.Context, o options, log *slog.Logger) (section, error)
	// optIn benchmarks run only when -only names them: soaks that take
	// longer than the rest together (`make soak`).
	optIn bool
}

// benchmarks are in the order they run.
var benchmarks = []benchmark{
	{name: "launch", run: func(ctx context.Context, o options, log *slog.Logger) (section, error) {
		return runLaunch(ctx, o.launch, log)
	}},
	{name: "checkpoint", run: func(ctx context.Context, o options, log *slog.Logger) (section, error) {
		return runCheckpoint(ctx, o.ckpt, log)
	}},
	{name: "report", run: func(ctx context.Context, o options, log *slog.Logger) (section, error) {
		return runReport(ctx, o.report, log)
	}},
	{name: "scheduler", run: func(ctx context.Context, o options, log *slog.Logger) (section, error) {
		return runScheduler(ctx, o.sched, log)
	}},
	{name: "heartbeat", run: func(ctx context.Context, o options, log *slog.Logger) (section, error) {
		return runHeartbeat(ctx, o.beat, log)
	}},
	{name: "recovery", run: func(ctx context.Context, o options, log *slog.Logger) (section, error) {
		return runRecovery(ctx, o.rec, log)
	}},
	{name: "driver", run: func(ctx context.Context, o options, log *slog.Logger) (section, error) {
		return runDriver(ctx, o.driver, log)
	}},
	{name: "sweep", run: func(ctx context.Context, o options, log *slog.Logger) (section, error) {
		return runTune(ctx, o.tune, log)
	}},
	{name: "failover", run: func(ctx context.Context, o options, log *slog.Logger) (section, error) {
		return runFailover(ctx, o.fail, log)
	}},
	{name: "teardown", optIn: true, run: func(ctx context.Context, o options, log *slog.Logger) (section, error) {
		return runTeardown(ctx, o.soak, log)
	}},
}

func benchmarkNames() []string {
	var names []string
	for _, b := range benchmarks {
		names = append(names, b.name)
	}
	return names
}

func main() {
	var o options
	flag.StringVar(&o.only, "only", "", "run one benchmark ("+strings.Join(benchmarkNames(), ", ")+") and keep the others' sections of BENCHMARKS.md (default: all)")
	flag.StringVar(&o.out, "out", "docs", "directory for BENCHMARKS.md and the charts")
	rounds := flag.Int("rounds", 10, "rounds: in each, every contender of a benchmark runs once (for launch, once per worker count)")
	flag.StringVar(&o.launch.rtrain, "rtrain", "bin/rtrain", "launch: the rtrain binary (driver: the one its wheel carries)")
	flag.StringVar(&o.launch.python, "python", "/usr/bin/python3", "launch: python with torch, for torchrun and the floor; driver: the python the venv is made from")
	workers := flag.String("workers", "1,2,4", "launch: worker counts")
	size := flag.String("ckpt-size", "1GiB", "checkpoint: the checkpoint's size (e.g. 1GiB, 256MiB; at least 1MiB)")
	flag.StringVar(&o.ckpt.dir, "ckpt-dir", os.TempDir(), "checkpoint: where to write the checkpoint, its copies and MinIO's data: the disk measured")
	tuneTrials := flag.Int("sweep-trials", 1000, "sweep: trials in the sweep")
	tuneRounds := flag.Int("sweep-rounds", 1, "sweep: sweeps to run (each also times rtrain fit's start 5 times)")
	tuneCPUs := flag.Int("sweep-cpus", 16, "sweep: CPUs the sweep's node offers, so trials at once")
	flag.StringVar(&o.ckpt.peers.aws, "aws", "", "checkpoint: the AWS CLI to measure beside package checkpoint (default: Debian's /usr/bin/aws, else aws on PATH; left out when there is none)")
	flag.StringVar(&o.ckpt.peers.rclone, "rclone", "", "checkpoint: the rclone to measure beside package checkpoint (default: rclone on PATH; left out when there is none)")
	soakRuns := flag.Int("soak-runs", 100, "teardown: runs of the soak's job under each launcher")
	failRounds := flag.Int("failover-rounds", 3, "failover: SIGKILLs of the active head, and restarts of a single head")
	failJobs := flag.Int("failover-jobs", 100, "failover: running jobs the restarted single head re-adopts")
	heartbeatHead := flag.Bool("heartbeat-head", false, "internal: serve the heartbeat benchmark's head (the benchmark starts itself with it)")
	flag.Parse()
	if *heartbeatHead {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := serveHeartbeatHead(ctx, os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "rtrain-bench: heartbeat head:", err)
			os.Exit(1)
		}
		return
	}
	usage := func(err error) {
		fmt.Fprintln(os.Stderr, "rtrain-bench:", err)
		os.Exit(2)
	}
	if o.only != "" && !slices.Contains(benchmarkNames(), o.only) {
		usage(fmt.Errorf("-only %q: want one of %s", o.only, strings.Join(benchmarkNames(), ", ")))
	}
	if *rounds < 1 {
		usage(fmt.Errorf("-rounds %d: want at least 1", *rounds))
	}
	o.launch.rounds, o.ckpt.rounds = *rounds, *rounds
	o.report = reportOptions{rounds: *rounds, rtrain: o.launch.rtrain, python: o.launch.python, sizeMB: 256}
	o.sched = schedOptions{rounds: *rounds, duration: 3 * time.Second}
	o.beat = heartbeatOptions{rounds: *rounds, agents: 10_000, conns: 200, window: 20 * time.Second}
	o.driver = driverOptions{rounds: *rounds, rtrain: o.launch.rtrain, python: o.launch.python}
	o.tune = tuneOptions{rounds: *tuneRounds, trials: *tuneTrials, length: time.Second, cpus: *tuneCPUs, rtrain: o.launch.rtrain, python: o.launch.python}
	o.rec = recoveryOptions{rounds: *rounds, rtrain: o.launch.rtrain, python: o.launch.python}
	o.soak = teardownOptions{runs: *soakRuns, rtrain: o.launch.rtrain, python: o.launch.python}
	o.fail = failoverOptions{rounds: *failRounds, jobs: *failJobs, agents: 4, rtrain: o.launch.rtrain, python: o.launch.python}
	if *failRounds < 1 || *failJobs < 1 {
		usage(fmt.Errorf("-failover-rounds %d, -failover-jobs %d: want at least 1 of each", *failRounds, *failJobs))
	}
	if *soakRuns < 1 {
		usage(fmt.Errorf("-soak-runs %d: want at least 1", *soakRuns))
	}
	ws, err := parseInts(*workers)
	if err != nil {
		usage(fmt.Errorf("-workers: %w", err))
	}
	o.launch.workers = ws
	if o.ckpt.size, err = parseSize(*size); err != nil {
		usage(fmt.Errorf("-ckpt-size: %w", err))
	}
	if o.ckpt.size < 1<<20 {
		usage(fmt.Errorf("-ckpt-size %s: want at least 1MiB", *size))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "rtrain-bench:", err)
		os.Exit(1)
	}
}

// run measures the benchmarks o selects and writes the report. A
// benchmark that fails does not stop the others; what was measured is
// written either way.
func run(ctx context.Context, o options, log *slog.Logger) error {
	var fresh []section
	var errs []error
	for _, b := range benchmarks {
		if (o.only == "" && b.optIn) || (o.only != "" && o.only != b.name) || ctx.Err() != nil {
			continue
		}
		s, err := b.run(ctx, o, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
		} else {
			fresh = append(fresh, s)
		}
	}
	if len(fresh) > 0 {
		if err := writeDoc(o.out, fresh); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
