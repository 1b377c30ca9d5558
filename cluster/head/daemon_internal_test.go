package head

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/trainer"
)

// A job that logs without end keeps its head's memory bounded: the oldest
// log lines go, every other event stays, a warning stands where lines went,
// and readers resume by index.
func TestHeadJobDropsOldestLogLines(t *testing.T) {
	hj := &headJob{changed: make(chan struct{}), logDir: "/results/run/logs"}
	add := func(e trainer.Event) { hj.add(jobEvent(e), "", "") }
	add(trainer.Event{Type: trainer.EventState, State: trainer.StateRunning})
	lines, added := 0, 0
	for added < maxJobLogBytes*3/2 {
		add(trainer.Event{Type: trainer.EventLog, Line: strings.Repeat("line ", 50), Rank: lines % 4})
		lines, added = lines+1, added+250
	}
	add(trainer.Event{Type: trainer.EventReport, Rank: 0})

	all := hj.eventsFrom(0)
	assert.Less(t, len(all), lines, "old lines were dropped")
	assert.LessOrEqual(t, hj.logBytes, maxJobLogBytes)
	assert.Equal(t, int64(lines+2), hj.next)
	assert.Equal(t, string(trainer.EventState), all[0].Kind, "non-log events are kept")
	var note trainer.Event
	require.NoError(t, json.Unmarshal(all[1].EventJson, &note))
	assert.Equal(t, trainer.EventWarning, note.Type, "a notice stands where the lines went")
	assert.Equal(t, string(trainer.EventWarning), all[1].Kind, "the notice's kind")
	assert.Regexp(t, `^\d+ log lines of this job's output are no longer in the head's memory; every line is in /results/run/logs/rank_\*\.log on the head$`, note.Message)
	assert.Contains(t, string(all[len(all)-1].EventJson), `"Type":"report"`)
	for i := 1; i < len(all); i++ {
		require.Less(t, all[i-1].Index, all[i].Index, "indices only grow")
	}
	// A reader that had read up to a line that was dropped gets the notice
	// first; one that had read them all goes on from the next line,
	// reading nothing twice.
	got := hj.eventsFrom(all[1].Index - 5)
	assert.Equal(t, all[1].Index, got[0].Index)
	got = hj.eventsFrom(all[1].Index + 1)
	assert.Equal(t, all[2].Index, got[0].Index)
	assert.Equal(t, all[1].Index+1, all[2].Index)
}

// startTestHead is a head on loopback with no nodes, its results in a
// temporary directory.
func startTestHead(t *testing.T, cfg Config) *Daemon {
	t.Helper()
	cfg.Addr, cfg.Security = "127.0.0.1", auth.Security{Token: "t"}
	if cfg.ResultsDir == "" {
		cfg.ResultsDir = t.TempDir()
	}
	h, err := Start(t.Context(), cfg, nil)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	return h
}

// submitRequest is what a client sends for cfg, with an empty working
// directory.
func submitRequest(t *testing.T, cfg trainer.Config) *clusterpb.SubmitJobHeader {
	t.Helper()
	body, err := json.Marshal(cfg)
	require.NoError(t, err)
	return &clusterpb.SubmitJobHeader{ConfigJson: body, Script: cfg.Script}
}

// A remote client's local --storage and --resume-from name places on the
// head: they must stay in the head's results directory.
func TestSubmitRefusesStorageOutsideTheResultsDir(t *testing.T) {
	results := t.TempDir()
	outside := t.TempDir()
	h := startTestHead(t, Config{ResultsDir: results})
	for name, cfg := range map[string]trainer.Config{
		"absolute":        {Storage: outside},
		"escape":          {Storage: "../" + filepath.Base(outside)},
		"escape inside":   {Storage: "ckpts/../../x"},
		"file url":        {Storage: "file://" + outside},
		"resume-from":     {ResumeFrom: filepath.Join(outside, "run", "checkpoint_000001")},
		"resume-from url": {ResumeFrom: "file://" + filepath.Join(outside, "run", "checkpoint_000001")},
		"restart-from":    {RestartFrom: filepath.Join(outside, "run", "checkpoint_000001")},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Script, cfg.Workers = "train.py", 1
			_, err := h.submit(submitRequest(t, cfg), cluster.Workdir{})
			require.ErrorIs(t, err, trainer.ErrInvalidConfig)
			assert.Contains(t, err.Error(), "the head's results directory "+results)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestConfineLocal(t *testing.T) {
	results := t.TempDir()
	extra := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.Symlink(outside, filepath.Join(results, "link")))
	home, err := os.UserHomeDir()
	require.NoError(t, err)
	tests := []struct {
		name, loc string
		want      string // "" for a refusal
	}{
		{"relative, from the results dir", "ckpts", filepath.Join(results, "ckpts")},
		{"the results dir itself", results, results},
		{"absolute inside", filepath.Join(results, "a", "b"), filepath.Join(results, "a", "b")},
		{"dots that stay inside", "a/../b", filepath.Join(results, "b")},
		{"file url inside", "file://" + results + "/c", filepath.Join(results, "c")},
		{"an allowed root", filepath.Join(extra, "team"), filepath.Join(extra, "team")},
		{"s3 is not confined", "s3://bucket/prefix", "s3://bucket/prefix"},
		{"nor any other scheme", "gs://bucket", "gs://bucket"},
		{"a url missing its // is checkpoint.Open's to refuse", "s3:bucket", "s3:bucket"},
		{"~user is checkpoint.Open's to refuse", "~root/x", "~root/x"},
		{"a file url on another host is too", "file://host/x", "file://host/x"},
		{"escape", "../x", ""},
		{"escape after a dir", "a/../../x", ""},
		{"absolute outside", outside, ""},
		{"a prefix is not a parent", results + "-other", ""},
		{"a symlink out", "link/ckpts", ""},
		{"file url outside", "file://" + outside, ""},
		{"the head's home", "~/ckpts", ""},
	}
	if rel, err := filepath.Rel(home, results); err == nil && filepath.IsLocal(rel) {
		t.Fatalf("the test's temporary directory %s is in the home directory", results)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := trainer.ConfineLocal("--storage", tt.loc, results, []string{extra})
			if tt.want != "" {
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
				return
			}
			require.ErrorIs(t, err, trainer.ErrInvalidConfig)
			assert.Equal(t, fmt.Sprintf("--storage %s is outside the head's results directory %s: give a path inside it (a relative one is taken from there) or an s3:// URL, or start the head with --allow-storage DIR to allow another", tt.loc, results), err.Error())
		})
	}
}

// A notice of one dropped line says so in the singular: it said "1 log
// line of this job's output are no longer".
func TestHeadJobNoticeOfOneLine(t *testing.T) {
	hj := &headJob{logDir: "/results/run/logs"}
	b, err := json.Marshal(trainer.Event{Type: trainer.EventLog, Line: "dropped"})
	require.NoError(t, err)
	var note trainer.Event
	require.NoError(t, json.Unmarshal(hj.notice(&clusterpb.JobEvent{EventJson: b}, 1).EventJson, &note))
	assert.Equal(t, "1 log line of this job's output is no longer in the head's memory; every line is in /results/run/logs/rank_*.log on the head", note.Message)
}
