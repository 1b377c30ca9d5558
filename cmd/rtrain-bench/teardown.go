package main

import (
	"context"
	"errors"
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

const teardownHeading = "Teardown soak (finished jobs that fail at exit)"

const teardownScript = "cmd/rtrain-bench/bench_teardown.py"

const teardownWorkers = 4

type teardownOptions struct {
	runs   int
	rtrain string
	python string
}

// soakContender runs the soak's job once; its output says how it went.
type soakContender struct {
	name    string
	command func(ctx context.Context, dir string) (*exec.Cmd, error)
}

// teardownWarning is rtrain's line for a rank that crashed as Python shut
// down after its program had finished.
var teardownWarning = regexp.MustCompile(`^rtrain: warning: rank \d+ finished, then crashed as Python shut down`)

// checksumLine is the job's last line on every rank.
var checksumLine = regexp.MustCompile(`rank (\d+) of \d+ checksum (-?[0-9.]+)`)

func soakContenders(o teardownOptions) []soakContender {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	rtrainBin, torchrun, job := abs(o.rtrain), abs("scripts/torchrun311.py"), abs(teardownScript)
	n := strconv.Itoa(teardownWorkers)
	return []soakContender{
		{"rtrain", func(ctx context.Context, dir string) (*exec.Cmd, error) {
			return exec.CommandContext(ctx, rtrainBin, "fit", "--workers", n, "--progress", "plain", "--results-dir", dir, "--python", o.python, job), nil
		}},
		{"torchrun", func(ctx context.Context, dir string) (*exec.Cmd, error) {
			port, err := rendezvous.FreePort(ctx, "127.0.0.1")
			if err != nil {
				return nil, err
			}
			cmd := exec.CommandContext(ctx, o.python, torchrun, "--nproc_per_node", n, "--master_port", strconv.Itoa(port), job)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			return cmd, nil
		}},
	}
}

// soakCount is what one contender's runs came to.
type soakCount struct {
	runs, failed int
	// finishedThenCrashed counts runs in which a rank crashed as Python
	// shut down after its program had finished (rtrain says so; torchrun
	// cannot tell, and such a run fails).
	finishedThenCrashed int
	// disagreed counts runs whose ranks printed different checksums, or
	// not all of them.
	disagreed int
	// firstFailure is the end of the first failed run's output.
	firstFailure string
}

// runTeardown runs the same job under each contender, in a random order
// every round, and counts the runs that failed.
func runTeardown(ctx context.Context, o teardownOptions, log *slog.Logger) (section, error) {
	cs := soakContenders(o)
	counts := map[string]*soakCount{}
	for _, c := range cs {
		counts[c.name] = &soakCount{}
	}
	for round := range o.runs {
		for _, i := range rand.Perm(len(cs)) {
			c := cs[i]
			failed, crashed, agreed, out, err := soakOnce(ctx, c)
			if err != nil {
				return section{}, fmt.Errorf("%s: %w", c.name, err)
			}
			n := counts[c.name]
			n.runs++
			if failed {
				n.failed++
				if n.firstFailure == "" {
					n.firstFailure = lastLines(out, 12)
				}
			}
			if crashed {
				n.finishedThenCrashed++
			}
			if !agreed {
				n.disagreed++
			}
			log.Info("run", "round", round+1, "contender", c.name, "failed", failed, "finished then crashed", crashed)
		}
	}
	measured := fmt.Sprintf("%s%s — %s. Counts of %d runs under each launcher.", measuredPrefix, time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(torchVersion(o.python)), o.runs)
	return renderTeardown(o, measured, counts), nil
}

// soakOnce runs the job once under c: whether it failed, whether rtrain
// warned of a crash after a finish, whether every rank printed the same
// checksum, and its output.
func soakOnce(ctx context.Context, c soakContender) (failed, crashed, agreed bool, out string, err error) {
	dir, err := os.MkdirTemp("", "rtrain-bench-teardown-")
	if err != nil {
		return false, false, false, "", err
	}
	defer os.RemoveAll(dir)
	cmd, err := c.command(ctx, dir)
	if err != nil {
		return false, false, false, "", err
	}
	b, runErr := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return false, false, false, "", ctx.Err()
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		return false, false, false, "", runErr
	}
	out = string(b)
	crashed, agreed = parseSoak(out)
	return runErr != nil, crashed, agreed, out, nil
}

// parseSoak reads a run's output: whether rtrain warned of a rank that
// crashed after its program finished, and whether every rank printed the
// same checksum.
func parseSoak(out string) (crashed, agreed bool) {
	sums := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if teardownWarning.MatchString(line) {
			crashed = true
		}
		// Ranks that share a pipe (torchrun's) can interleave within a line.
		for _, m := range checksumLine.FindAllStringSubmatch(line, -1) {
			sums[m[1]] = m[2]
		}
	}
	agreed = len(sums) == teardownWorkers
	for _, s := range sums {
		agreed = agreed && s == sums["0"]
	}
	return crashed, agreed
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

func renderTeardown(o teardownOptions, measured string, counts map[string]*soakCount) section {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", measured)
	fmt.Fprintf(&b, "The same finished job run %d times under `rtrain fit --workers %d` and under Debian's torchrun (`--nproc_per_node %d`, through `scripts/torchrun311.py`), alternating in a random order every round. `%s` trains a small model with DDP on gloo (CPU) for three short epochs with the model a module global, all-reduces each epoch's mean loss for the log, prints every rank's parameter checksum and calls `destroy_process_group()`. DDP keeps the process group, and so gloo's threads, alive until Python shuts down; a gloo thread still freeing the last epoch's tensor then waits for the GIL, Python ends it with `pthread_exit`, and the unwind through torch's destructors aborts the rank (\"terminate called without an active exception\"). rtrain's `sitecustomize` lets go of the GIL for 10 ms after the program's last `atexit` handler, while Python is whole, which lets such a thread finish (`trainer`'s TestAFinishedCollectiveDoesNotAbortTheExit forces the race: every run aborts a rank under a plain launch, none under rtrain). A run fails when the launcher exits non-zero. rtrain counts a rank that crashed after its program finished as a success with a warning; torchrun fails such a run.\n\n", o.runs, teardownWorkers, teardownWorkers, teardownScript)
	fmt.Fprintf(&b, "| launcher | runs | failed | finished, then crashed in teardown (warned, not failed) | checksums disagreed or missing |\n|---|---|---|---|---|\n")
	for _, name := range []string{"rtrain", "torchrun"} {
		n := counts[name]
		if n == nil {
			continue
		}
		warned := "—"
		if name == "rtrain" {
			warned = strconv.Itoa(n.finishedThenCrashed)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %d |\n", name, n.runs, n.failed, warned, n.disagreed)
	}
	rt, tr := counts["rtrain"], counts["torchrun"]
	if rt != nil && tr != nil {
		fmt.Fprintf(&b, "\nGoal (issue: reliability, item 1): no failed run where torchrun has none. This run: rtrain %d failed of %d, torchrun %d of %d (%s).\n", rt.failed, rt.runs, tr.failed, tr.runs, yesNo(rt.failed <= tr.failed))
	}
	for _, name := range []string{"rtrain", "torchrun"} {
		if n := counts[name]; n != nil && n.firstFailure != "" {
			fmt.Fprintf(&b, "\nThe end of %s's first failed run:\n\n```\n%s\n```\n", name, n.firstFailure)
		}
	}
	return section{heading: teardownHeading, body: b.String()}
}
