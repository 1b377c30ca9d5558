package trainer

import (
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/pyshim"
)

// A job as a sweep's trial: the hyperparameters it shows (Config.Params),
// the metric the sweep judges it by (Config.Metric, Config.Mode), and its
// best value of that metric so far (BestTracker, JobSummary.Best).

// The values of Config.Mode.
const (
	ModeMin = "min"
	ModeMax = "max"
)

// Bounds on Config.Params, which every job summary carries: enough to
// tell trials apart, not a place for the trial's whole config. Lengths
// are in characters; MaxParamKey bounds Config.Metric too.
const (
	MaxParams     = 64
	MaxParamKey   = 128
	MaxParamValue = 256
)

// validateTrial checks Params, Metric and Mode.
func (c *Config) validateTrial() error {
	if len(c.Params) > MaxParams {
		return invalid("--param: %d parameters, at most %d: keep the ones that tell the trials apart", len(c.Params), MaxParams)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Params)) {
		v := c.Params[k]
		switch {
		case k == "":
			return invalid("--param %q: the key is empty; want KEY=VALUE", "="+v)
		case strings.Contains(k, "="):
			return invalid("--param key %q: a key has no '='", k)
		case !printable(k) || !printable(v):
			return invalid("--param %q: use printable text, no control characters (newlines, tabs)", k+"="+v)
		case utf8.RuneCountInString(k) > MaxParamKey:
			return invalid("--param %.40q...: the key is %d characters, at most %d", k, utf8.RuneCountInString(k), MaxParamKey)
		case utf8.RuneCountInString(v) > MaxParamValue:
			return invalid("--param %s: the value is %d characters, at most %d", k, utf8.RuneCountInString(v), MaxParamValue)
		}
	}
	switch {
	case c.Metric == "" && c.Mode != "":
		return invalid("--mode %s needs --metric: the reported metric it judges", c.Mode)
	case c.Metric == "":
		return nil
	case !printable(c.Metric) || utf8.RuneCountInString(c.Metric) > MaxParamKey:
		return invalid("--metric %.40q: give the name of a reported metric, at most %d printable characters", c.Metric, MaxParamKey)
	case c.Mode == "":
		return invalid("--metric %s needs --mode min or --mode max: whether a lower or a higher %s is better", c.Metric, c.Metric)
	case c.Mode != ModeMin && c.Mode != ModeMax:
		return invalid("--mode %q: want min or max", c.Mode)
	}
	return nil
}

// printable reports whether s is UTF-8 text without control characters,
// which would break the line of a table or fail on the wire.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// BestTracker follows a trial's best value of Metric over rank 0's
// reports, the lowest or the highest as Mode says. Cheap: it keeps the
// best and a count, not the reports.
type BestTracker struct {
	Metric, Mode string
	// Reports counts rank 0's reports so far.
	Reports int
	// Value is the best so far, at Iteration: 1 for rank 0's first report
	// (Ray Tune's training_iteration). Iteration 0: none yet.
	Value     float64
	Iteration int
}

// Report folds in rank 0's next report.
func (b *BestTracker) Report(m pyshim.Metrics) {
	b.Reports++
	if b.Metric == "" {
		return
	}
	v, ok := checkpoint.MetricNumber(m.Values[b.Metric])
	if ok && (b.Iteration == 0 || Better(b.Mode, v, b.Value)) {
		b.Value, b.Iteration = v, b.Reports
	}
}

// Best is the best value so far; nil when no report had Metric as a
// number.
func (b *BestTracker) Best() *float64 {
	if b.Iteration == 0 {
		return nil
	}
	v := b.Value
	return &v
}

// Better reports whether v beats than under mode: lower for ModeMin,
// higher otherwise. A tie is no better: the earlier keeps it.
func Better(mode string, v, than float64) bool {
	if mode == ModeMin {
		return v < than
	}
	return v > than
}
