package dashboard

import (
	"strconv"
	"strings"
)

// The chart's SVG coordinates: a viewBox of chartW×chartH with the plot
// inside the margins, the y labels on the left.
const (
	chartW, chartH                           = 360, 150
	plotLeft, plotRight, plotTop, plotBottom = 56, 350, 10, 128
)

// box is the chart's geometry, for the template.
type box struct{ W, H, Left, Right, Top, Bottom int }

// frame is a chart's axes: the ranges its points were scaled from, and
// what x counts.
type frame struct {
	YMin, YMax string
	XMin, XMax int
	XLabel     string
}

// Box is the geometry the points were scaled into.
func (frame) Box() box {
	return box{chartW, chartH, plotLeft, plotRight, plotTop, plotBottom}
}

// chart is a metric drawn as an SVG polyline: what the template needs.
type chart struct {
	frame
	Key string
	// Points is the polyline's points attribute, one "x,y" per report.
	Points string
	N      int
	// LastX, LastY mark the newest point; Last is its value.
	LastX, LastY string
	Last         string
}

// scale maps points into the plot: x0..x1 across it, lo..hi up it. A
// flat range is drawn across the middle.
type scale struct {
	x0, x1 int
	lo, hi float64
}

// scaleOf is the scale that fits every point of every series; false when
// there is none.
func scaleOf(series ...[]point) (scale, bool) {
	var s scale
	found := false
	for _, ps := range series {
		for _, p := range ps {
			if !found {
				s, found = scale{x0: p.X, x1: p.X, lo: p.Y, hi: p.Y}, true
			}
			s.x0, s.x1 = min(s.x0, p.X), max(s.x1, p.X)
			s.lo, s.hi = min(s.lo, p.Y), max(s.hi, p.Y)
		}
	}
	return s, found
}

func (s scale) x(x int) string {
	if s.x1 == s.x0 {
		return coord((plotLeft + plotRight) / 2)
	}
	return coord(plotLeft + float64(x-s.x0)*(plotRight-plotLeft)/float64(s.x1-s.x0))
}

func (s scale) y(y float64) string {
	if s.hi == s.lo {
		return coord((plotTop + plotBottom) / 2)
	}
	return coord(plotBottom - (y-s.lo)*(plotBottom-plotTop)/(s.hi-s.lo))
}

// polyline is ps as a polyline's points attribute.
func (s scale) polyline(ps []point) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s.x(p.X) + "," + s.y(p.Y))
	}
	return b.String()
}

// frame is the axes of a chart drawn at s, x counting xLabel.
func (s scale) frame(xLabel string) frame {
	return frame{YMin: value(s.lo), YMax: value(s.hi), XMin: s.x0, XMax: s.x1, XLabel: xLabel}
}

// drawChart scales ps (in report order) into the plot.
func drawChart(key string, ps []point) chart {
	c := chart{Key: key, N: len(ps)}
	s, ok := scaleOf(ps)
	if !ok {
		return c
	}
	last := ps[len(ps)-1]
	c.frame, c.Points = s.frame("report"), s.polyline(ps)
	c.LastX, c.LastY, c.Last = s.x(last.X), s.y(last.Y), value(last.Y)
	return c
}

// trialLine is one trial of a sweep chart.
type trialLine struct {
	Job, Name string
	Points    string
	// Best marks the sweep's best trial, drawn last, over the others.
	Best bool
}

// sweepChart is one metric of a sweep's trials, one polyline each, over
// their reports (training_iteration), on one scale.
type sweepChart struct {
	frame
	Key   string
	Lines []trialLine
	// BestX, BestY mark the best trial's best point; empty without one.
	BestX, BestY string
}

// trialSeries is what a sweep chart draws of a trial: its metric's points,
// and for the best trial, its best point.
type trialSeries struct {
	Job, Name string
	Points    []point
	Best      *point
}

// drawSweep draws every trial's points on one scale, the best trial (the
// one with Best) last; ok is false when no trial has a point.
func drawSweep(key string, trials []trialSeries) (sweepChart, bool) {
	all := make([][]point, 0, len(trials)+1)
	var best *trialSeries
	for i, tr := range trials {
		all = append(all, tr.Points)
		if tr.Best != nil {
			best = &trials[i]
			all = append(all, []point{*tr.Best})
		}
	}
	s, ok := scaleOf(all...)
	if !ok {
		return sweepChart{}, false
	}
	c := sweepChart{frame: s.frame("iteration"), Key: key}
	for _, tr := range trials {
		if len(tr.Points) > 0 && tr.Best == nil {
			c.Lines = append(c.Lines, trialLine{Job: tr.Job, Name: tr.Name, Points: s.polyline(tr.Points)})
		}
	}
	if best != nil {
		if len(best.Points) > 0 {
			c.Lines = append(c.Lines, trialLine{Job: best.Job, Name: best.Name, Points: s.polyline(best.Points), Best: true})
		}
		c.BestX, c.BestY = s.x(best.Best.X), s.y(best.Best.Y)
	}
	return c, true
}

func coord(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// value is a metric's value as a person reads it: five significant digits.
func value(f float64) string { return strconv.FormatFloat(f, 'g', 5, 64) }
