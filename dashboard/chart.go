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

// Box is the geometry the points were scaled into.
func (chart) Box() box {
	return box{chartW, chartH, plotLeft, plotRight, plotTop, plotBottom}
}

// chart is a metric drawn as an SVG polyline: what the template needs.
type chart struct {
	Key string
	// Points is the polyline's points attribute, one "x,y" per report.
	Points string
	N      int
	// LastX, LastY mark the newest point; Last is its value.
	LastX, LastY string
	Last         string
	YMin, YMax   string
	XMin, XMax   int
}

// drawChart scales ps (in report order) into the plot. A flat series is
// drawn across the middle.
func drawChart(key string, ps []point) chart {
	c := chart{Key: key, N: len(ps)}
	if len(ps) == 0 {
		return c
	}
	lo, hi := ps[0].Y, ps[0].Y
	for _, p := range ps {
		lo, hi = min(lo, p.Y), max(hi, p.Y)
	}
	x0, x1 := ps[0].X, ps[len(ps)-1].X
	sx := func(x int) float64 {
		if x1 == x0 {
			return (plotLeft + plotRight) / 2
		}
		return plotLeft + float64(x-x0)*(plotRight-plotLeft)/float64(x1-x0)
	}
	sy := func(y float64) float64 {
		if hi == lo {
			return (plotTop + plotBottom) / 2
		}
		return plotBottom - (y-lo)*(plotBottom-plotTop)/(hi-lo)
	}
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(coord(sx(p.X)) + "," + coord(sy(p.Y)))
	}
	last := ps[len(ps)-1]
	c.Points = b.String()
	c.LastX, c.LastY, c.Last = coord(sx(last.X)), coord(sy(last.Y)), value(last.Y)
	c.YMin, c.YMax, c.XMin, c.XMax = value(lo), value(hi), x0, x1
	return c
}

func coord(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// value is a metric's value as a person reads it: five significant digits.
func value(f float64) string { return strconv.FormatFloat(f, 'g', 5, 64) }
