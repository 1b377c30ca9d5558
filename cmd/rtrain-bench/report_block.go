package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const reportHeading = "Report latency (how long report() holds the training loop)"

// reportOptions configure the report() benchmark.
type reportOptions struct {
	rounds int
	rtrain string
	python string
	sizeMB int
}

const reportScript = "scripts/bench_report.py"

// runReport runs scripts/bench_report.py under rtrain: rank 0 alternates a
// plain local copy of a checkpoint directory (the anchor: what staging the
// files costs at the least) with report(checkpoint=) of the same
// directory, and prints how long each took.
func runReport(ctx context.Context, o reportOptions, log *slog.Logger) (section, error) {
	tmp, err := os.MkdirTemp("", "rtrain-bench-report-")
	if err != nil {
		return section{}, err
	}
	defer os.RemoveAll(tmp)
	script, _ := filepath.Abs(reportScript)
	rtrainBin, _ := filepath.Abs(o.rtrain)
	log.Info("report benchmark", "rounds", o.rounds, "MB", o.sizeMB)
	cmd := exec.CommandContext(ctx, rtrainBin, "fit", "--workers", "1", "--results-dir", tmp, "--python", o.python, script)
	cmd.Env = append(os.Environ(), "BENCH_ROUNDS="+strconv.Itoa(o.rounds), "BENCH_MB="+strconv.Itoa(o.sizeMB), "BENCH_GAP=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return section{}, fmt.Errorf("%w\n%s", err, out.String())
	}
	copies, reports, err := parseReportBench(out.String())
	if err != nil {
		return section{}, err
	}
	return renderReport(o, copies, reports), nil
}

// parseReportBench reads the script's "BENCH copy S" and "BENCH report S"
// lines (rank-prefixed by rtrain).
func parseReportBench(out string) (copies, reports []time.Duration, err error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		name, d, ok, err := benchLine(sc.Text())
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		switch name {
		case "copy":
			copies = append(copies, d)
		case "report":
			reports = append(reports, d)
		}
	}
	if len(copies) == 0 || len(copies) != len(reports) {
		return nil, nil, fmt.Errorf("want as many copy as report figures, got %d and %d:\n%s", len(copies), len(reports), out)
	}
	return copies, reports, nil
}

// benchLine reads a bench script's "BENCH NAME SECONDS" line, anywhere in
// line (after a rank prefix, say); ok is false for any other line.
func benchLine(line string) (name string, d time.Duration, ok bool, err error) {
	_, rest, ok := strings.Cut(line, "BENCH ")
	if !ok {
		return "", 0, false, nil
	}
	name, secs, _ := strings.Cut(rest, " ")
	f, err := strconv.ParseFloat(strings.TrimSpace(secs), 64)
	if err != nil {
		return "", 0, false, fmt.Errorf("bad line %q: %w", line, err)
	}
	return name, time.Duration(f * float64(time.Second)), true, nil
}

func renderReport(o reportOptions, copies, reports []time.Duration) section {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", measuredLine(o.rounds, torchVersion(o.python)))
	fmt.Fprintf(&b, "`%s` under `rtrain fit` (one worker, the default local storage): rank 0 writes a %d MiB checkpoint directory (4 shards), then each round, in alternating order, copies it with `shutil.copytree` (the anchor: what staging the files costs at the least) and calls `rtrain.report(metrics, checkpoint=...)` with it, one second apart so the previous upload is done, as a training step would give it. report() returns once the agent has copied the files aside; the upload runs after.\n\n", reportScript, o.sizeMB)
	c, r := summarize(copies), summarize(reports)
	fmt.Fprintf(&b, "| measure | time | ÷ local copy |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| local copy (`shutil.copytree`) | %s | 1.00 |\n", fmtMillis(c))
	fmt.Fprintf(&b, "| `rtrain.report(..., checkpoint=...)` | %s | %.2f |\n", fmtMillis(r), r.median.Seconds()/c.median.Seconds())
	fmt.Fprintf(&b, "\nGoal (issue: checkpoints): the time report() blocks the training loop ≤ the time to copy the files locally (ratio ≤ 1.00, within noise).\n")
	return section{heading: reportHeading, body: b.String()}
}

func fmtMillis(s stats) string {
	return fmt.Sprintf("%.0f ms (%.0f)", float64(s.median)/1e6, float64(s.p95)/1e6)
}
