package dashboard

import (
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/rtrain/rtrain/launcher"
	"github.com/rtrain/rtrain/trainer"
)

func TestDrawChart(t *testing.T) {
	tests := map[string]struct {
		ps         []point
		wantPoints string
		wantLast   string
	}{
		"empty":  {nil, "", ""},
		"one":    {[]point{{1, 3}}, "203.0,69.0", "3"},
		"flat":   {[]point{{1, 2}, {2, 2}}, "56.0,69.0 350.0,69.0", "2"},
		"rising": {[]point{{1, 0}, {2, 1}, {5, 4}}, "56.0,128.0 129.5,98.5 350.0,10.0", "4"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := drawChart("loss", tt.ps)
			assert.Equal(t, tt.wantPoints, c.Points)
			assert.Equal(t, tt.wantLast, c.Last)
			assert.Equal(t, len(tt.ps), c.N)
		})
	}
}

// A long series keeps at most maxPoints, evenly spread, and its newest.
func TestSeriesThins(t *testing.T) {
	s := &series{Key: "loss", stride: 1}
	const n = 10*maxPoints + 3
	for x := 1; x <= n; x++ {
		s.add(point{X: x, Y: float64(x)})
	}
	ps := s.all()
	assert.LessOrEqual(t, len(ps), maxPoints+1)
	assert.Greater(t, len(ps), maxPoints/2)
	assert.Equal(t, n, ps[len(ps)-1].X, "the newest point is kept")
	step := ps[1].X - ps[0].X
	for i := 1; i < len(ps)-1; i++ {
		assert.Equal(t, step, ps[i].X-ps[i-1].X, "evenly spread at %d", i)
	}
}

func TestOutcome(t *testing.T) {
	tests := map[string]launcher.Exit{
		"success":   {},
		"failed":    {Code: 2},
		"oom":       {Code: -1, Signal: syscall.SIGKILL, OOMKills: 1},
		"stopped":   {Code: -1, Signal: syscall.SIGTERM, Stopped: true},
		"lost":      {Code: -1, Lost: "node n1 died"},
		"preempted": {Code: -1, Signal: syscall.SIGTERM, Stopped: true, Preempted: true},
	}
	for want, exit := range tests {
		assert.Equal(t, want, outcome(&trainer.WorkerExit{Exit: exit}))
	}
	assert.ElementsMatch(t, outcomes, func() []string {
		var ks []string
		for k := range tests {
			ks = append(ks, k)
		}
		return ks
	}())
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/jobs/x?a=1": "/jobs/x?a=1", "": "/", "jobs": "/", "//evil": "/", "https://evil/": "/",
		`/\evil`: "/", "javascript:alert(1)": "/",
	} {
		assert.Equal(t, want, localPath(in), in)
	}
}

// A session cookie ends at its expiry, and one from another head process
// (another key) never opens this one.
func TestSessionExpires(t *testing.T) {
	a := newAuth("secret")
	now := time.Now()
	a.now = func() time.Time { return now }
	v := signed(a.key, "session", now.Add(sessionTTL))
	req := func(v string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: cookieName, Value: v})
		return r
	}
	assert.True(t, a.ok(req(v)), "a live session")
	now = now.Add(sessionTTL + time.Second)
	assert.False(t, a.ok(req(v)), "an expired session")
	b := newAuth("secret")
	assert.False(t, b.ok(req(signed(a.key, "session", time.Now().Add(time.Hour)))), "another process's session")
	assert.False(t, b.ok(req(signed([]byte("secret"), "session", time.Now().Add(time.Hour)))), "a session keyed by the token")
}

// A sweep chart needs a point; the best trial's best point is marked
// even when its line is not drawn.
func TestDrawSweep(t *testing.T) {
	_, ok := drawSweep("score", []trialSeries{{Job: "a"}})
	assert.False(t, ok, "no trial has a point")
	c, ok := drawSweep("score", []trialSeries{{Job: "a", Points: []point{{1, 0}, {2, 1}}}, {Job: "b", Best: &point{2, 2}}})
	assert.True(t, ok)
	assert.Equal(t, []trialLine{{Job: "a", Points: "56.0,128.0 350.0,69.0"}}, c.Lines)
	assert.Equal(t, "350.0", c.BestX)
	assert.Equal(t, "10.0", c.BestY)
	assert.Equal(t, frame{YMin: "0", YMax: "2", XMin: 1, XMax: 2, XLabel: "iteration"}, c.frame)
}
