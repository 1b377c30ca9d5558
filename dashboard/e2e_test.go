package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/agent"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/head"
	"github.com/rtrain/rtrain/dashboard"
	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/trainer"
)

// chromium is Debian's headless-capable browser; the test is skipped
// without it, but fails in CI.
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is required in CI (apt-get install chromium)")
		}
		t.Skip("skipping: no chromium")
	}
	return path
}

// dumpDOM loads url in headless Chromium, lets its scripts run, and
// returns the DOM they leave.
func dumpDOM(t *testing.T, browser, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom", url)
	// The browser's helpers are in its process group: a timeout ends them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "chromium: %s", tail(stderr.String(), 2000))
	return string(out)
}

// A real head and agent on loopback run a real PyTorch job; the dashboard
// served from the head shows it in a real browser, and /metrics counts it.
func TestEndToEnd(t *testing.T) {
	py := testutil.Python(t)
	browser := chromium(t)
	root := testutil.RepoRoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	sec := auth.Security{Token: "t"}
	h, err := head.Start(ctx, head.Config{Addr: "127.0.0.1", Port: 0, Security: sec, ResultsDir: t.TempDir()}, nil)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	actx, stopAgent := context.WithCancel(context.Background())
	ra, err := agent.StartNode(actx, agent.NodeConfig{Resolve: trainer.ResolvePython, HeadAddr: h.Addr().String(), Security: sec,
		NodeIP: "127.0.0.1", DataDir: t.TempDir(), Overrides: discover.NoOverrides}, nil)
	if err != nil {
		stopAgent()
		require.NoError(t, err)
	}
	t.Cleanup(func() { stopAgent(); <-ra.Done() })

	c, err := trainer.Dial(h.Addr().String(), sec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	marker := testutil.Marker(t)
	sub, err := c.Submit(ctx, trainer.Config{
		Script: filepath.Join(root, "examples", "train_rtrain.py"), Workers: 2,
		WorkingDir: filepath.Join(root, "examples"), Python: py, Args: []string{"--epochs", "3"},
		Env: []string{marker}, Group: "e2e", Params: map[string]string{"lr": "0.01"}, Metric: "epoch", Mode: trainer.ModeMax,
	})
	require.NoError(t, err)
	t.Cleanup(func() { testutil.NoProcesses(t, marker, 10*time.Second) })
	res, err := c.Attach(ctx, sub.JobID, true, nil)
	require.NoError(t, err)
	require.Equal(t, trainer.StateSucceeded, res.State)

	srv := httptest.NewServer(dashboard.New(h, sec.Token, nil))
	t.Cleanup(srv.Close)

	t.Run("browser", func(t *testing.T) {
		dom := dumpDOM(t, browser, dashboard.LoginLink(srv.URL+"/jobs/"+sub.JobID, sec.Token, time.Minute))
		assert.Contains(t, dom, `data-job="`+sub.JobID+`"`)
		assert.Contains(t, dom, "<h1>"+sub.Name+"</h1>")
		assert.Contains(t, dom, `<span id="state" class="state SUCCEEDED">SUCCEEDED</span>`)
		for _, rank := range []string{"0", "1"} {
			assert.Contains(t, dom, `<tr data-rank="`+rank+`" class="success"><td>`+rank+`</td>`)
		}
		points := chartPoints(dom)
		assert.GreaterOrEqual(t, points["loss"], 3, "loss chart points; charts: %v", points)
		assert.Equal(t, 3, points["epoch"])
		assert.Contains(t, dom, `<body data-live="ended">`, "the page's script followed the job to its end")
		assert.Contains(t, dom, "checkpoint_000003")
	})
	t.Run("sweep", func(t *testing.T) {
		// The head found the best epoch among rank 0's reports (0, 1, 2).
		jobs := h.Status().Jobs
		require.Len(t, jobs, 1)
		require.NotNil(t, jobs[0].Best)
		assert.Equal(t, 2.0, *jobs[0].Best)
		assert.Equal(t, 3, jobs[0].BestIteration)
		resp, body := get(t, srv, "/sweep/e2e", sec.Token)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, body, `<a href="/jobs/`+sub.JobID+`">`+sub.Name+`</a> <span class="tag">best</span>`)
		assert.Contains(t, body, "<code>lr=0.01</code>")
		assert.Contains(t, body, "<td>epoch=2</td><td>3</td>")
		lines := sweepLineRE.FindAllStringSubmatch(body, -1)
		require.Len(t, lines, 1)
		assert.Equal(t, "best", lines[0][1])
		assert.Len(t, strings.Fields(lines[0][3]), 3, "one point a report")
	})
	t.Run("metrics", func(t *testing.T) {
		got := scrape(t, func(path string) (*http.Response, string) { return get(t, srv, path, sec.Token) })
		for name, want := range map[string]float64{
			"rtrain_nodes{state=alive}":                  1,
			"rtrain_jobs{state=SUCCEEDED}":               1,
			"rtrain_jobs{state=RUNNING}":                 0,
			"rtrain_scheduler_pending_jobs":              0,
			"rtrain_head_leader":                         1,
			"rtrain_reports_total":                       6, // 2 ranks × 3 epochs
			"rtrain_checkpoints_total":                   3,
			"rtrain_worker_exits_total{outcome=success}": 2,
			"rtrain_worker_exits_total{outcome=failed}":  0,
			"rtrain_restarts_total":                      0,
		} {
			assert.Equal(t, want, got[name], name)
		}
		assert.Positive(t, got["rtrain_checkpoint_bytes_total"])
		assert.Positive(t, got["rtrain_checkpoint_upload_seconds_total"])
		assert.Positive(t, got["rtrain_cpus"])
		assert.Equal(t, got["rtrain_cpus"], got["rtrain_cpus_free"], "nothing holds the node after the job")
		assert.Contains(t, got, "rtrain_node_heartbeat_age_seconds{node="+ra.NodeID+"}")
	})
}

func tail(s string, n int) string { return s[max(len(s)-n, 0):] }
