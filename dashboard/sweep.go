package dashboard

import (
	"fmt"
	"net/http"

	"github.com/rtrain/rtrain/trainer"
)

// A sweep's page: its trials (the jobs of one group), their params and
// best values, and one chart of every trial's metric.

// trialRow is a trial as the sweep page's table shows it.
type trialRow struct {
	trainer.JobSummary
	// IsBest marks the sweep's best trial.
	IsBest bool
}

// sweepPage is what sweep.html shows.
type sweepPage struct {
	Group string
	// Metric and Mode are the first trial's that names a metric: a
	// sweep's trials share them.
	Metric, Mode string
	Trials       []trialRow
	// Chart is nil until a trial has reported Metric.
	Chart *sweepChart
}

// sweepOf is group's page, from its trials' summaries (oldest first) and
// points(id, metric), a trial's values of metric by report.
func sweepOf(group string, trials []trainer.JobSummary, points func(id, metric string) []point) sweepPage {
	p := sweepPage{Group: group}
	for _, j := range trials {
		if j.Metric != "" {
			p.Metric, p.Mode = j.Metric, j.Mode
			break
		}
	}
	best := -1
	for i, j := range trials {
		if j.Best != nil && j.Metric == p.Metric && (best < 0 || trainer.Better(p.Mode, *j.Best, *trials[best].Best)) {
			best = i
		}
	}
	var series []trialSeries
	for i, j := range trials {
		p.Trials = append(p.Trials, trialRow{JobSummary: j, IsBest: i == best})
		if p.Metric == "" {
			continue
		}
		ts := trialSeries{Job: j.ID, Name: j.Name, Points: points(j.ID, p.Metric)}
		if i == best {
			ts.Best = &point{X: j.BestIteration, Y: *j.Best}
		}
		series = append(series, ts)
	}
	if c, ok := drawSweep(p.Metric, series); ok {
		p.Chart = &c
	}
	return p
}

// sweep is the page of the sweep whose trials are the jobs of group
// {group}.
func (s *server) sweep(w http.ResponseWriter, r *http.Request) {
	group := r.PathValue("group")
	var trials []trainer.JobSummary
	for _, j := range s.src.Status().Jobs {
		if j.Group == group {
			trials = append(trials, j)
		}
	}
	if len(trials) == 0 {
		http.Error(w, fmt.Sprintf("no sweep %q on this cluster: no job of that group", group), http.StatusNotFound)
		return
	}
	s.render(w, http.StatusOK, "sweep.html", "base", sweepOf(group, trials, s.points))
}

// points is job id's values of metric by report, as far as the
// dashboard has followed it.
func (s *server) points(id, metric string) []point {
	var ps []point
	s.t.job(id, func(j *jobState) {
		if sr := j.byKey[metric]; sr != nil {
			ps = sr.all()
		}
	})
	return ps
}
