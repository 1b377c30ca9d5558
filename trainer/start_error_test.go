package trainer

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/rendezvous"
)

// A start that fails on one node is that node's workers failing, so the
// job may restart; an error that will come back the same way on every
// attempt ends the job at once.
func TestFailedAtStart(t *testing.T) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	spec := func(node int) cluster.GroupSpec {
		return cluster.GroupSpec{NodeRank: node, Layout: rendezvous.Layout{LocalWorldSizes: []int{2, 2}},
			Workers: []cluster.WorkerSpec{{LocalRank: 0}, {LocalRank: 1}}}
	}
	tests := []struct {
		name  string
		ctx   context.Context
		err   error
		fatal bool
		lost  string
	}{
		{"node lost", t.Context(), fmt.Errorf("start: %w", cluster.ErrNodeLost), false, "start: cluster: node lost"},
		{"cgroup", t.Context(), errors.New("cluster: rank 2: launcher: create cgroup: device or resource busy"), false,
			"could not start on node b: cluster: rank 2: launcher: create cgroup: device or resource busy"},
		{"the node's own error", t.Context(), errors.New("node b: unpack the working directory: no space left on device"), false,
			"could not start on node b: node b: unpack the working directory: no space left on device"},
		{"bad input", t.Context(), invalid("script missing"), true, ""},
		{"strict isolation", t.Context(), fmt.Errorf("%w: no memory controller", cluster.ErrNotIsolated), true, ""},
		{"no reaper", t.Context(), fmt.Errorf("cluster: rank 2: %w", launcher.ErrNoReaper), true, ""},
		{"the job was cancelled", cancelled, context.Canceled, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exits, fatal := failedAtStart(tt.ctx, []string{"a", "b"}, []cluster.GroupSpec{spec(0), spec(1)}, []error{nil, tt.err})
			if tt.fatal {
				assert.Equal(t, tt.err, fatal)
				assert.Nil(t, exits)
				return
			}
			require.NoError(t, fatal)
			require.Len(t, exits, 4)
			for _, x := range exits[:2] {
				assert.True(t, x.Stopped, "rank %d on the node that started is stopped", x.Rank)
				assert.True(t, x.FailedAt.IsZero())
			}
			for i, x := range exits[2:] {
				assert.Equal(t, 2+i, x.Rank)
				assert.Equal(t, "b", x.Node)
				assert.Equal(t, tt.lost, x.Cause())
				assert.False(t, x.FailedAt.IsZero(), "rank %d failed", x.Rank)
			}
			jerr := newJobError(exits)
			require.NotNil(t, jerr)
			assert.Equal(t, 2, jerr.Cause.Rank)
		})
	}
}

// --retry-exit-codes and --fatal-exit-codes judge what a script exited
// with; workers that never exited with a code (lost, or never started)
// are judged by --max-failures alone.
func TestNoRestartJudgesExitCodesOnly(t *testing.T) {
	never := &JobError{Cause: WorkerExit{Rank: 1, Exit: launcher.Exit{Code: -1, Lost: "could not start on node b: spawn failed"}}}
	exited := &JobError{Cause: WorkerExit{Rank: 1, Exit: launcher.Exit{Code: 3}}}
	tests := []struct {
		name  string
		cfg   Config
		jerr  *JobError
		wantW string
	}{
		{"never started, retry codes", Config{MaxFailures: 2, RetryExitCodes: []int{75}}, never, ""},
		{"never started, fatal -1", Config{MaxFailures: 2, FatalExitCodes: []int{-1}}, never, ""},
		{"never started, no budget", Config{}, never, "no restarts allowed (--max-failures 0)"},
		{"exited, not a retry code", Config{MaxFailures: 2, RetryExitCodes: []int{75}}, exited, "exit code 3 is not one of --retry-exit-codes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &job{cfg: tt.cfg}
			assert.Equal(t, tt.wantW, j.noRestart(tt.jerr, []*JobError{tt.jerr}))
		})
	}
}

// The hang watchdog: an explicit HangTimeout from the moment every worker
// is up; by default only once the job has shown its pace, and never for a
// script that does not report.
func TestHangWatch(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		rank   int           // -1: every worker is up
		at     time.Duration // since t0; for a report
		armed  time.Duration // the wait the watchdog is armed with, 0: unarmed
		report bool
	}
	up := func(armed time.Duration) step { return step{rank: -1, armed: armed} }
	report := func(rank int, at, armed time.Duration) step {
		return step{rank: rank, at: at, armed: armed, report: true}
	}
	tests := []struct {
		name    string
		timeout time.Duration
		steps   []step
	}{
		{"explicit: armed once all are up", 10 * time.Second, []step{
			report(0, time.Second, 0), up(10 * time.Second), report(1, 2*time.Second, 10*time.Second)}},
		{"off", -1, []step{up(0), report(0, time.Second, 0), report(0, 2*time.Second, 0)}},
		{"default: never armed for a script that never reports", 0, []step{up(0)}},
		{"default: nor for one that reported once", 0, []step{up(0), report(0, time.Minute, 0), report(1, time.Minute, 0)}},
		{"default: armed at a rank's second report", 0, []step{
			up(0), report(0, time.Minute, 0), report(1, time.Minute, 0), report(0, 2*time.Minute, DefaultHangTimeout)}},
		{"default: a job that reports once an hour gets four", 0, []step{
			up(0), report(0, 10*time.Minute, 0), report(0, 70*time.Minute, 4*time.Hour),
			report(0, 71*time.Minute, 4*time.Hour)}},
		{"default: a slow start counts", 0, []step{
			up(0), report(0, 20*time.Minute, 0), report(0, 21*time.Minute, 80*time.Minute)}},
		{"default: reports before all are up arm nothing", 0, []step{
			report(0, time.Minute, 0), report(0, 2*time.Minute, 0), up(DefaultHangTimeout)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newHangWatch(tt.timeout)
			w.started(0, t0)
			w.started(1, t0)
			for i, s := range tt.steps {
				var got time.Duration
				if s.report {
					got = w.report(s.rank, at(s.at))
				} else {
					got = w.allUp()
				}
				assert.Equal(t, s.armed, got, "step %d", i)
			}
		})
	}
	assert.Equal(t, "hung: no report() from any worker for 1.5s", newHangWatch(1500*time.Millisecond).hung(1500*time.Millisecond))
	assert.Equal(t, "hung: no report() from any worker for 4h0m0s (the default hang timeout: 30m0s, or 4x the longest wait between a rank's reports; --hang-timeout sets another, -1s none)",
		newHangWatch(0).hung(4*time.Hour+time.Millisecond))
}
