// Command rtrain-bench runs rtrain's benchmarks against their anchors and
// writes docs/BENCHMARKS.md and a chart of the ratios. `make bench` runs it.
//
// Machines are noisy, so contenders alternate within every round, each
// figure is the median (and p95) of many runs, and every figure stands next
// to its anchor measured in the same run.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var o launchOptions
	flag.IntVar(&o.rounds, "rounds", 10, "runs of each contender and size")
	flag.StringVar(&o.rtrain, "rtrain", "bin/rtrain", "the rtrain binary")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "python with torch, for torchrun and the floor")
	flag.StringVar(&o.out, "out", "docs", "directory for BENCHMARKS.md and the chart")
	workers := flag.String("workers", "1,2,4", "worker counts")
	flag.Parse()
	ws, err := parseInts(*workers)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rtrain-bench: -workers:", err)
		os.Exit(2)
	}
	o.workers = ws
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := runLaunch(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "rtrain-bench:", err)
		os.Exit(1)
	}
}
