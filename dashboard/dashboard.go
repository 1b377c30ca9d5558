package dashboard

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rtrain/rtrain/cluster/head"
	"github.com/rtrain/rtrain/trainer"
)

// Source is what the dashboard shows: a running head. *head.Daemon is one.
type Source interface {
	// Status is the cluster: its nodes and jobs.
	Status() trainer.ClusterStatus
	// JobEvents returns job's events from index from on, the result once
	// the job has ended, and a channel closed at its next event; ok is
	// false for a job it does not know.
	JobEvents(job string, from, limit int) (events []trainer.Event, next int, res *trainer.Result, changed <-chan struct{}, ok bool)
}

var _ Source = (*head.Daemon)(nil)

// Limits of the events API: events per answer, and the longest wait for
// the next event.
const (
	maxEvents = 5000
	maxWait   = 30 * time.Second
)

//go:embed templates static
var files embed.FS

// server is the dashboard's handlers.
type server struct {
	src   Source
	log   *slog.Logger
	t     *tracker
	pages map[string]*template.Template
}

// New is the dashboard and /metrics over src, behind token (the cluster
// token): programs send it as "Authorization: Bearer TOKEN", browsers sign
// in once and keep a session cookie. Routes:
//
//	/                          the cluster: nodes and jobs
//	/jobs/{id}                 a job: ranks, log tail, metric charts, checkpoints
//	/sweep/{group}             a sweep: the jobs of a group (its trials), their params
//	                           and best metric, and every trial's metric in one chart
//	/api/status                the cluster as JSON (trainer.ClusterStatus)
//	/api/jobs/{id}/events      a job's events as JSON, ?from=N&wait=SECONDS
//	/metrics                   Prometheus metrics (rtrain_*)
//
// It starts no goroutines; a request waiting for events ends with its
// context or after at most 30 s.
func New(src Source, token string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{src: src, log: log, t: &tracker{src: src, jobs: map[string]*jobState{}}, pages: parsePages()}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{s.t}, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	static, _ := fs.Sub(files, "static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.cluster)
	mux.HandleFunc("GET /jobs/{id}", s.job)
	mux.HandleFunc("GET /jobs/{id}/panels", s.panels)
	mux.HandleFunc("GET /sweep/{group}", s.sweep)
	mux.HandleFunc("GET /api/status", s.apiStatus)
	mux.HandleFunc("GET /api/jobs/{id}/events", s.apiEvents)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{log}}))
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, localPath(r.PostFormValue("next")), http.StatusSeeOther)
	})
	return headers(newAuth(token).wrap(mux, s.loginForm))
}

// headers keeps the pages to what they are: nothing loads from elsewhere,
// nothing frames them, nothing is cached.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"bytes": humanBytes,
		"age":   func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() },
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Local().Format("2006-01-02 15:04:05")
		},
		"took": func(submitted, ended time.Time) string {
			end := time.Now()
			if !ended.IsZero() {
				end = ended
			}
			return end.Sub(submitted).Round(time.Second).String()
		},
		"cpus": func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
		"score": func(f *float64) string {
			if f == nil {
				return ""
			}
			return value(*f)
		},
	}
	base := template.Must(template.New("").Funcs(funcs).ParseFS(files, "templates/base.html", "templates/panels.html"))
	pages := map[string]*template.Template{}
	for _, name := range []string{"cluster.html", "job.html", "sweep.html", "login.html"} {
		pages[name] = template.Must(template.Must(base.Clone()).ParseFS(files, "templates/"+name))
	}
	return pages
}

// render executes a template into a buffer first, so a failing template
// is a clean 500 rather than half a page.
func (s *server) render(w http.ResponseWriter, status int, page, name string, data any) {
	var b bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&b, name, data); err != nil {
		s.log.Error("dashboard: render", "page", page, "err", err)
		http.Error(w, "the page could not be drawn; the head's log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = b.WriteTo(w)
}

func (s *server) loginForm(w http.ResponseWriter, _ *http.Request, next string, wrong bool) {
	s.render(w, http.StatusUnauthorized, "login.html", "login.html", map[string]any{"Next": next, "Wrong": wrong})
}

// nodeRow is a node as the cluster page shows it.
type nodeRow struct {
	trainer.NodeStatus
	CPUsUsed   float64
	GPUsUsed   int
	MemoryUsed int64
	// Custom is "name used / total" for each custom resource.
	Custom []string
}

func (s *server) cluster(w http.ResponseWriter, _ *http.Request) {
	st := s.src.Status()
	states := map[string]int{}
	var nodes []nodeRow
	custom := false
	for _, n := range st.Nodes {
		states[n.State]++
		total, free := n.Node.Total, n.Free
		row := nodeRow{NodeStatus: n, CPUsUsed: total.CPU - free.CPU,
			GPUsUsed: total.GPU - free.GPU, MemoryUsed: total.MemoryBytes - free.MemoryBytes}
		totalCustom, freeCustom := total.Custom.Map(), free.Custom.Map()
		for _, name := range slices.Sorted(maps.Keys(totalCustom)) {
			q := totalCustom[name]
			used := math.Round((q-freeCustom[name])*1e4) / 1e4 // quantities are in 1/10000s
			row.Custom = append(row.Custom, fmt.Sprintf("%s %g / %g", name, used, q))
		}
		custom = custom || len(row.Custom) > 0
		nodes = append(nodes, row)
	}
	grouped := slices.ContainsFunc(st.Jobs, func(j trainer.JobSummary) bool { return j.Group != "" })
	s.render(w, http.StatusOK, "cluster.html", "base",
		map[string]any{"Status": st, "Nodes": nodes, "Alive": states[trainer.NodeAlive], "Dead": states[trainer.NodeDead], "Custom": custom, "Grouped": grouped})
}

// find is the job id names: a job id, or a run name (the newest run of
// that name).
func find(st trainer.ClusterStatus, id string) *trainer.JobSummary {
	var named *trainer.JobSummary
	for i, j := range st.Jobs {
		if j.ID == id {
			return &st.Jobs[i]
		}
		if j.Name == id && (named == nil || !j.Submitted.Before(named.Submitted)) {
			named = &st.Jobs[i]
		}
	}
	return named
}

// jobPage is what job.html and panels.html show.
type jobPage struct {
	Job *trainer.JobSummary
	jobView
}

// jobPage is the job r names; false (with a 404 sent) when there is none.
func (s *server) jobPage(w http.ResponseWriter, r *http.Request) (*jobPage, bool) {
	sum := find(s.src.Status(), r.PathValue("id"))
	var p *jobPage
	if sum != nil {
		s.t.job(sum.ID, func(j *jobState) { p = &jobPage{Job: sum, jobView: j.view()} })
	}
	if p == nil {
		http.Error(w, fmt.Sprintf("no job %q on this cluster", r.PathValue("id")), http.StatusNotFound)
		return nil, false
	}
	return p, true
}

func (s *server) job(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.jobPage(w, r); ok {
		s.render(w, http.StatusOK, "job.html", "base", p)
	}
}

// panels is the part of the job page that the page's script reloads when
// something other than a log line happened.
func (s *server) panels(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.jobPage(w, r); ok {
		s.render(w, http.StatusOK, "job.html", "panels", p)
	}
}

func (s *server) json(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("dashboard: encode json", "err", err)
		http.Error(w, "could not encode the answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (s *server) apiStatus(w http.ResponseWriter, _ *http.Request) {
	s.json(w, s.src.Status())
}

// eventsReply is a batch of a job's events: Next is the index to ask from
// next; Ended is set with the job's last event, Result with it.
type eventsReply struct {
	Job    string
	Events []trainer.Event
	Next   int
	Ended  bool
	Result *trainer.Result `json:",omitempty"`
}

// apiEvents sends a job's events from ?from= on, at most maxEvents. With
// ?wait=SECONDS and none yet, it waits for the next (long polling).
func (s *server) apiEvents(w http.ResponseWriter, r *http.Request) {
	sum := find(s.src.Status(), r.PathValue("id"))
	if sum == nil {
		http.Error(w, fmt.Sprintf("no job %q on this cluster", r.PathValue("id")), http.StatusNotFound)
		return
	}
	from, err := strconv.Atoi(r.URL.Query().Get("from"))
	if r.URL.Query().Get("from") == "" {
		from, err = 0, nil
	}
	if err != nil || from < 0 {
		http.Error(w, "from must be an event index (0 or more)", http.StatusBadRequest)
		return
	}
	var wait time.Duration
	if q := r.URL.Query().Get("wait"); q != "" {
		secs, err := strconv.ParseFloat(q, 64)
		if err != nil || secs < 0 {
			http.Error(w, "wait must be seconds (0 or more)", http.StatusBadRequest)
			return
		}
		wait = min(time.Duration(secs*float64(time.Second)), maxWait)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		events, next, res, changed, ok := s.src.JobEvents(sum.ID, from, maxEvents)
		if !ok {
			http.Error(w, fmt.Sprintf("no job %q on this cluster", sum.ID), http.StatusNotFound)
			return
		}
		if len(events) == 0 && res == nil {
			// The result comes with the last event: a caller already past
			// it learns that the job ended from what the tracker saw.
			s.t.job(sum.ID, func(j *jobState) {
				if j.ended && from >= j.next {
					res = j.result
				}
			})
		}
		if len(events) > 0 || res != nil || wait == 0 {
			rep := eventsReply{Job: sum.ID, Events: events, Next: next, Ended: res != nil, Result: res}
			if rep.Events == nil {
				rep.Events = []trainer.Event{}
			}
			s.json(w, rep)
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

// humanBytes is n in B, KiB, MiB, ...
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// slogPrinter is promhttp's error log on slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("dashboard: metrics", "err", fmt.Sprint(v...)) }
