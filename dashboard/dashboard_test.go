package dashboard_test

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/dashboard"
	"github.com/rtrain/rtrain/trainer"
)

func serve(t *testing.T, src dashboard.Source) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(dashboard.New(src, token, nil))
	t.Cleanup(srv.Close)
	return srv
}

// noRedirect is a client that shows redirects instead of following them.
func noRedirect(srv *httptest.Server) *http.Client {
	c := *srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func TestAuthPrograms(t *testing.T) {
	src, _ := fakeCluster()
	srv := serve(t, src)
	for _, path := range []string{"/metrics", "/api/status", "/api/jobs/j1/events"} {
		t.Run(path, func(t *testing.T) {
			resp, body := get(t, srv, path, "")
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no token")
			assert.NotContains(t, body, "<form", "a program gets a plain 401")
			resp, _ = get(t, srv, path, "wrong")
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "wrong token")
			resp, _ = get(t, srv, path+"?token="+token, "")
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "?token= in an address signs nobody in")
			resp, _ = get(t, srv, path+"?login=9999999999.00", "")
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "forged login ticket")
			resp, _ = get(t, srv, path, token)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "bearer token")
		})
	}
}

func TestAuthBrowser(t *testing.T) {
	src, _ := fakeCluster()
	srv := serve(t, src)
	c := noRedirect(srv)

	for _, path := range []string{"/", "/jobs/j1", "/static/style.css"} {
		resp, body := get(t, srv, path, "")
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s without a token", path)
		assert.Contains(t, body, `<input type="password" name="token"`, "%s shows the login form", path)
		assert.Contains(t, body, `name="next" value="`+path+`"`)
	}
	resp, body := get(t, srv, "/jobs/j1?login="+url.QueryEscape(strings.TrimPrefix(dashboard.LoginLink("/", "wrong", time.Minute), "/?login=")), "")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, body, "not this cluster's token", "a ticket signed with another token")

	// A login link once: a cookie that is not the token, and a redirect
	// that drops the ticket from the address.
	link := dashboard.LoginLink(srv.URL+"/jobs/j1?x=1", token, time.Minute)
	assert.NotContains(t, link, token, "a login link must not carry the cluster token")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, link, nil)
	resp, _ = do(t, c, req)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/jobs/j1?x=1", resp.Header.Get("Location"))
	cookies := resp.Cookies()
	require.Len(t, cookies, 1)
	ck := cookies[0]
	assert.True(t, ck.HttpOnly, "HttpOnly")
	assert.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	assert.NotContains(t, ck.Value, token, "the cookie must not carry the cluster token")
	assert.WithinDuration(t, time.Now().Add(12*time.Hour), ck.Expires, time.Minute, "the session expires")

	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, link, nil)
	resp, _ = do(t, c, req)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a login link works once")
	assert.Empty(t, resp.Cookies())

	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/jobs/j1", nil)
	req.AddCookie(ck)
	resp, body = do(t, c, req)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "with the cookie")
	assert.Contains(t, body, "train")

	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/status", nil)
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value + "0"})
	resp, _ = do(t, c, req)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "with a forged cookie")

	// The login form posts to /login, which goes back to a local page only.
	for next, want := range map[string]string{"/jobs/j1": "/jobs/j1", "//evil.example/": "/", "https://evil.example/": "/", `/\evil.example`: "/"} {
		form := url.Values{"token": {token}, "next": {next}}
		req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, _ = do(t, c, req)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, "login to %s", next)
		assert.Equal(t, want, resp.Header.Get("Location"), "login to %s", next)
		assert.Len(t, resp.Cookies(), 1)
	}
	form := url.Values{"token": {"wrong"}, "next": {"/"}}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ = do(t, c, req)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "login with a wrong token")
	assert.Empty(t, resp.Cookies())
}

// A browser that signs in once keeps the session for every page.
func TestAuthCookieJar(t *testing.T) {
	src, _ := fakeCluster()
	srv := serve(t, src)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := *srv.Client()
	c.Jar = jar
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, dashboard.LoginLink(srv.URL+"/", token, time.Minute), nil)
	resp, body := do(t, &c, req)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "<h1>Cluster</h1>")
	for _, path := range []string{"/jobs/j3", "/static/job.js", "/metrics", "/api/jobs/j1/events"} {
		req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		resp, _ = do(t, &c, req)
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}

func TestClusterPage(t *testing.T) {
	src, _ := fakeCluster()
	srv := serve(t, src)
	resp, body := get(t, srv, "/", token)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")
	for _, want := range []string{
		"1 alive, 1 dead",
		"<td>n1</td><td>10.0.0.1</td>",
		"<td>2 / 8</td>",              // CPUs used / total
		"<td>2 / 4</td>",              // GPUs used / total
		"<td>2, 3</td>",               // free GPU indices
		"<td>8.0 GiB / 16.0 GiB</td>", // memory
		"<td>licence 1.5 / 2</td>",    // custom resources
		"400ms ago", "12s ago",
		`<span class="state dead">dead</span>`,
		`<a href="/jobs/j1">j1</a>`, `<a href="/jobs/j3">j3</a>`,
		"waiting for resources: needs 8 GPUs, the cluster has 4",
		"rank 1 failed (exit code 1): ValueError: boom",
	} {
		assert.Contains(t, body, want)
	}
	assert.NotContains(t, body, "cdn", "nothing from elsewhere")
}

func TestJobPage(t *testing.T) {
	src, _ := fakeCluster()
	srv := serve(t, src)

	t.Run("running", func(t *testing.T) {
		resp, body := get(t, srv, "/jobs/j1", token)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		for _, want := range []string{
			"<h1>train</h1>",
			`<tr data-rank="0" class=""><td>0</td><td>n1</td><td>100</td><td>running</td><td>3</td>`,
			`<tr data-rank="1" class=""><td>1</td><td>n1</td><td>101</td><td>running</td><td>1</td>`,
			"[rank 0] hello &lt;b&gt;world&lt;/b&gt;", `<span class="stderr">[rank 1] a warning`,
			"<td>1</td><td>0.5</td><td>2.0 KiB</td><td>1.5s</td>",
			"<code>/results/train/checkpoint_000002</code>",
			`data-next="12"`, `data-ended="false"`,
		} {
			assert.Contains(t, body, want)
		}
		// rank 0's three reports; the string metric has no chart.
		assert.Equal(t, map[string]int{"epoch": 3, "loss": 3}, chartPoints(body))
		assert.Contains(t, body, `<polyline class="line" fill="none" points="56.0,10.0 203.0,88.7 350.0,128.0"/>`, "loss 1, 0.5, 0.25")
	})
	t.Run("failed", func(t *testing.T) {
		resp, body := get(t, srv, "/jobs/j3", token)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		for _, want := range []string{
			`<span id="state" class="state FAILED">FAILED</span>`,
			`<tr data-rank="1" class="failed">`, "exit code 1 (failed)", "ValueError: boom",
			`<tr data-rank="0" class="stopped">`, "killed by signal 15 (terminated) (stopped)",
			`data-ended="true"`, "No numeric metric", "No checkpoint yet",
		} {
			assert.Contains(t, body, want)
		}
	})
	t.Run("by name", func(t *testing.T) {
		resp, body := get(t, srv, "/jobs/broken", token)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, body, `data-job="j3"`)
	})
	t.Run("unknown", func(t *testing.T) {
		resp, _ := get(t, srv, "/jobs/nope", token)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		resp, _ = get(t, srv, "/api/jobs/nope/events", token)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	})
	t.Run("panels", func(t *testing.T) {
		resp, body := get(t, srv, "/jobs/j1/panels", token)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.NotContains(t, body, "<html")
		assert.Contains(t, body, `<table id="ranks">`)
		assert.Len(t, chartPoints(body), 2)
	})
}

// The page follows a job as it goes: new events are folded into what was
// seen before.
func TestJobPageFollows(t *testing.T) {
	src, jobs := fakeCluster()
	srv := serve(t, src)
	_, body := get(t, srv, "/jobs/j1", token)
	assert.Equal(t, 3, chartPoints(body)["loss"])
	jobs["j1"].add(trainer.Event{Type: trainer.EventReport, Rank: 0, Metrics: metrics("epoch", 3, "loss", 0.2, "acc", 0.9)})
	jobs["j1"].add(trainer.Event{Type: trainer.EventWorkerExited, Rank: 1, Exit: &trainer.WorkerExit{Rank: 1, Node: "n1", PID: 101}})
	_, body = get(t, srv, "/jobs/j1/panels", token)
	assert.Equal(t, map[string]int{"epoch": 4, "loss": 4, "acc": 1}, chartPoints(body))
	assert.Contains(t, body, `<tr data-rank="1" class="success"><td>1</td><td>n1</td><td>101</td><td>exited</td>`)
}

type eventsReply struct {
	Job    string
	Events []trainer.Event
	Next   int
	Ended  bool
	Result *trainer.Result
}

func events(t *testing.T, srv *httptest.Server, path string) eventsReply {
	t.Helper()
	resp, body := get(t, srv, path, token)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var r eventsReply
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	return r
}

func TestEventsAPI(t *testing.T) {
	src, jobs := fakeCluster()
	srv := serve(t, src)

	r := events(t, srv, "/api/jobs/j1/events")
	assert.Len(t, r.Events, 12)
	assert.Equal(t, 12, r.Next)
	assert.False(t, r.Ended)
	assert.Equal(t, trainer.EventWorkerStarted, r.Events[1].Type)
	assert.Equal(t, []string{"epoch", "loss"}, r.Events[5].Metrics.Keys, "metrics keep their order")

	r = events(t, srv, "/api/jobs/train/events?from=10")
	assert.Equal(t, "j1", r.Job)
	require.Len(t, r.Events, 2)
	assert.Equal(t, 2, r.Events[0].Checkpoint.Index)

	r = events(t, srv, "/api/jobs/j3/events?from=3")
	assert.Len(t, r.Events, 3)
	assert.True(t, r.Ended)
	require.NotNil(t, r.Result)
	assert.Equal(t, trainer.StateFailed, r.Result.State)
	assert.Equal(t, "ValueError: boom", r.Events[0].Exit.Cause())

	r = events(t, srv, "/api/jobs/j3/events?from=6&wait=30")
	assert.Empty(t, r.Events, "past the last event")
	assert.True(t, r.Ended, "a job that ended answers at once")
	assert.Equal(t, 6, r.Next)

	for _, q := range []string{"from=-1", "from=x", "wait=x", "wait=-1"} {
		resp, _ := get(t, srv, "/api/jobs/j1/events?"+q, token)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}

	t.Run("wait times out", func(t *testing.T) {
		start := time.Now()
		r := events(t, srv, "/api/jobs/j1/events?from=12&wait=0.05")
		assert.Empty(t, r.Events)
		assert.Equal(t, 12, r.Next)
		assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	})
	t.Run("wait for the next event", func(t *testing.T) {
		j := jobs["j1"]
		j.waiting = make(chan struct{}, 1)
		go func() {
			<-j.waiting
			j.add(trainer.Event{Type: trainer.EventLog, Rank: 0, Line: "late"})
		}()
		r := events(t, srv, "/api/jobs/j1/events?from=12&wait=30")
		require.Len(t, r.Events, 1)
		assert.Equal(t, "late", r.Events[0].Line)
		assert.Equal(t, 13, r.Next)
	})
}

func TestStatusAPI(t *testing.T) {
	src, _ := fakeCluster()
	srv := serve(t, src)
	resp, body := get(t, srv, "/api/status", token)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var st trainer.ClusterStatus
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	want := src.status()
	require.Len(t, st.Nodes, 2)
	assert.Equal(t, want.Nodes[0].Node.Total, st.Nodes[0].Node.Total, "custom resources included")
	assert.Equal(t, want.Nodes[0].GPUStats, st.Nodes[0].GPUStats)
	assert.Equal(t, 5*time.Second, st.HeartbeatTimeout)
	require.Len(t, st.Jobs, 3)
	assert.Equal(t, "j3", st.Jobs[2].ID)
	assert.True(t, want.Jobs[2].Ended.Equal(st.Jobs[2].Ended))
	assert.True(t, st.Jobs[1].Queued)

	// Programs read these names, not Go's field names.
	var raw struct {
		Nodes []map[string]json.RawMessage `json:"nodes"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &raw))
	for _, k := range []string{"node", "free", "gpus_free", "state", "gpu_stats"} {
		assert.Contains(t, raw.Nodes[0], k)
	}
	var free map[string]any
	require.NoError(t, json.Unmarshal(raw.Nodes[0]["free"], &free))
	assert.Contains(t, free, "memory_bytes")
	assert.Contains(t, string(raw.Nodes[0]["gpu_stats"]), `"memory_total_bytes"`)
}

func TestStatic(t *testing.T) {
	src, _ := fakeCluster()
	srv := serve(t, src)
	for path, typ := range map[string]string{"/static/style.css": "text/css", "/static/job.js": "text/javascript"} {
		resp, body := get(t, srv, path, token)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, resp.Header.Get("Content-Type"), typ, path)
		assert.NotContains(t, body, "http", "%s loads nothing from elsewhere", path)
	}
}
