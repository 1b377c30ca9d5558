// Command rtrain-bench runs rtrain's benchmarks against their anchors and
// writes docs/BENCHMARKS.md and a chart of the ratios per benchmark.
// `make bench` runs it.
//
// Machines are noisy, so contenders alternate within every round, each
// figure is the median (and p95) of many runs, and every figure stands next
// to its anchor measured in the same run. -only runs one benchmark and
// keeps the other's section of the existing BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// options are the command line.
type options struct {
	only   string // "" for every benchmark
	out    string
	launch launchOptions
	ckpt   ckptOptions
	report reportOptions
}

func main() {
	var o options
	flag.StringVar(&o.only, "only", "", "run one benchmark, launch, checkpoint or report, and keep the others' sections of BENCHMARKS.md (default: all)")
	flag.StringVar(&o.out, "out", "docs", "directory for BENCHMARKS.md and the charts")
	rounds := flag.Int("rounds", 10, "rounds: in each, every contender of a benchmark runs once (for launch, once per worker count)")
	flag.StringVar(&o.launch.rtrain, "rtrain", "bin/rtrain", "launch: the rtrain binary")
	flag.StringVar(&o.launch.python, "python", "/usr/bin/python3", "launch: python with torch, for torchrun and the floor")
	workers := flag.String("workers", "1,2,4", "launch: worker counts")
	size := flag.String("ckpt-size", "1GiB", "checkpoint: the checkpoint's size (e.g. 1GiB, 256MiB; at least 1MiB)")
	flag.StringVar(&o.ckpt.dir, "ckpt-dir", os.TempDir(), "checkpoint: where to write the checkpoint, its copies and MinIO's data: the disk measured")
	flag.Parse()
	usage := func(err error) {
		fmt.Fprintln(os.Stderr, "rtrain-bench:", err)
		os.Exit(2)
	}
	if o.only != "" && o.only != "launch" && o.only != "checkpoint" && o.only != "report" {
		usage(fmt.Errorf("-only %q: want launch, checkpoint or report", o.only))
	}
	if *rounds < 1 {
		usage(fmt.Errorf("-rounds %d: want at least 1", *rounds))
	}
	o.launch.rounds, o.ckpt.rounds = *rounds, *rounds
	o.report = reportOptions{rounds: *rounds, rtrain: o.launch.rtrain, python: o.launch.python, sizeMB: 256}
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
	if o.only == "" || o.only == "launch" {
		s, err := runLaunch(ctx, o.launch, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("launch: %w", err))
		} else {
			fresh = append(fresh, s)
		}
	}
	if (o.only == "" || o.only == "checkpoint") && ctx.Err() == nil {
		s, err := runCheckpoint(ctx, o.ckpt, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("checkpoint: %w", err))
		} else {
			fresh = append(fresh, s)
		}
	}
	if (o.only == "" || o.only == "report") && ctx.Err() == nil {
		s, err := runReport(ctx, o.report, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("report: %w", err))
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
