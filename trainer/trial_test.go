package trainer_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/pyshim"
	"github.com/rtrain/rtrain/trainer"
)

// A trial's params, metric and mode are checked with the rest of the
// config: each mistake is one line that says what to do.
func TestTrialConfigValidation(t *testing.T) {
	script := filepath.Join(t.TempDir(), "train.py")
	require.NoError(t, os.WriteFile(script, []byte("print('hi')\n"), 0o644))
	many := map[string]string{}
	for i := range trainer.MaxParams + 1 {
		many[fmt.Sprintf("p%d", i)] = "1"
	}
	tests := map[string]struct {
		config func(*trainer.Config)
		want   string // "" is valid
	}{
		"none": {func(*trainer.Config) {}, ""},
		"params, metric and mode": {func(c *trainer.Config) {
			c.Params = map[string]string{"lr": "0.01", "model/depth": "4"}
			c.Metric, c.Mode = "score", "max"
		}, ""},
		"params alone": {func(c *trainer.Config) { c.Params = map[string]string{"lr": ""} }, ""},
		"mode min":     {func(c *trainer.Config) { c.Metric, c.Mode = "loss", trainer.ModeMin }, ""},
		"longest key and value": {func(c *trainer.Config) {
			c.Params = map[string]string{strings.Repeat("k", trainer.MaxParamKey): strings.Repeat("é", trainer.MaxParamValue)}
		}, ""},
		"metric without mode": {func(c *trainer.Config) { c.Metric = "score" }, "--metric score needs --mode min or --mode max: whether a lower or a higher score is better"},
		"mode without metric": {func(c *trainer.Config) { c.Mode = "max" }, "--mode max needs --metric: the reported metric it judges"},
		"bad mode":            {func(c *trainer.Config) { c.Metric, c.Mode = "score", "best" }, `--mode "best": want min or max`},
		"mode in capitals":    {func(c *trainer.Config) { c.Metric, c.Mode = "score", "MAX" }, `--mode "MAX": want min or max`},
		"metric with newline": {func(c *trainer.Config) { c.Metric, c.Mode = "a\nb", "max" }, `--metric "a\nb": give the name of a reported metric, at most 128 printable characters`},
		"too many params":     {func(c *trainer.Config) { c.Params = many }, "--param: 65 parameters, at most 64: keep the ones that tell the trials apart"},
		"empty key":           {func(c *trainer.Config) { c.Params = map[string]string{"": "1"} }, `--param "=1": the key is empty; want KEY=VALUE`},
		"key with =":          {func(c *trainer.Config) { c.Params = map[string]string{"a=b": "1"} }, `--param key "a=b": a key has no '='`},
		"key too long":        {func(c *trainer.Config) { c.Params = map[string]string{strings.Repeat("k", trainer.MaxParamKey+1): "1"} }, "the key is 129 characters, at most 128"},
		"value too long": {func(c *trainer.Config) {
			c.Params = map[string]string{"lr": strings.Repeat("9", trainer.MaxParamValue+1)}
		}, "--param lr: the value is 257 characters, at most 256"},
		"value with a newline": {func(c *trainer.Config) { c.Params = map[string]string{"lr": "0.1\n0.2"} }, `--param "lr=0.1\n0.2": use printable text, no control characters (newlines, tabs)`},
		"value not utf-8":      {func(c *trainer.Config) { c.Params = map[string]string{"lr": "\xff"} }, "use printable text"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := trainer.Config{Script: script, Workers: 1}
			tt.config(&cfg)
			_, err := trainer.New(cfg, nil)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, trainer.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

// report is a report of one metric.
func report(key string, v any) pyshim.Metrics {
	return pyshim.Metrics{Keys: []string{key}, Values: map[string]any{key: v}}
}

// The best of a metric is the lowest or the highest of the reports that
// have it as a number, at the report it came at; reports without it count
// towards the iteration all the same.
func TestBestTracker(t *testing.T) {
	reports := []pyshim.Metrics{
		report("score", json.Number("0.5")),
		report("loss", 1.0),
		report("score", 0.25),
		report("score", "n/a"),
		report("score", math.NaN()),
		report("score", json.Number("0.75")),
		report("score", 0.75),
		report("score", 0.5),
	}
	tests := map[string]struct {
		metric, mode string
		want         *float64
		wantAt       int
	}{
		"max":                {"score", trainer.ModeMax, ptr(0.75), 6},
		"min":                {"score", trainer.ModeMin, ptr(0.25), 3},
		"a metric never had": {"acc", trainer.ModeMax, nil, 0},
		"no metric":          {"", "", nil, 0},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			b := trainer.BestTracker{Metric: tt.metric, Mode: tt.mode}
			assert.Nil(t, b.Best(), "none before the first report")
			for _, m := range reports {
				b.Report(m)
			}
			assert.Equal(t, tt.want, b.Best())
			assert.Equal(t, tt.wantAt, b.Iteration, "iteration")
			assert.Equal(t, len(reports), b.Reports)
		})
	}
}

func ptr(f float64) *float64 { return &f }
