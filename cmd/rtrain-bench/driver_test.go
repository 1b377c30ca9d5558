package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// drvRun is a run of took seconds whose job kept job cores busy and the
// whole machine all, with its events at the given seconds.
func drvRun(took, job, all float64, at map[string]float64) driverRun {
	r := driverRun{took: secs(took), cpuJob: secs(took * job), cpuAll: secs(took * all), at: map[string]time.Duration{}}
	for e, s := range at {
		r.at[e] = secs(s)
	}
	return r
}

func TestDriverSection(t *testing.T) {
	fit := []driverRun{
		drvRun(6, 1.5, 1.6, map[string]float64{"body": 1.5, "done": 5.5}),
		drvRun(8, 1.5, 1.6, map[string]float64{"body": 2.5, "done": 7}),
		drvRun(7, 1.5, 1.6, map[string]float64{"body": 2, "done": 6.5}),
	}
	// The driver's runs: fit() called at 0.8 s, its job as long as
	// rtrain fit's from there, but for 0.1 s more teardown.
	drvBusy := func(took, other float64) driverRun {
		return drvRun(took, 1.25, 1.25+other, map[string]float64{"start": 0.01, "fit": 0.8, "body": 2.8, "done": took - 0.6})
	}
	drv := func(took float64) driverRun { return drvBusy(took, 0) }
	probes := []driverProbe{
		{interpreter: secs(0.012), imports: secs(0.05), torch: secs(0.7), pickle: secs(0.0007), version: secs(0.009)},
		{interpreter: secs(0.014), imports: secs(0.07), torch: secs(0.9), pickle: secs(0.0009), version: secs(0.011)},
	}
	tests := []struct {
		name   string
		drv    []driverRun
		wants  []string
		absent []string
	}{
		{
			name: "over the goal",
			drv:  []driverRun{drv(7.7), drv(7.7), drv(9)},
			wants: []string{
				"| `rtrain fit` | 7.00 s (8.00) | 1.00 | 1.50 + 0.10 |",
				"| `TorchTrainer.fit()` | 7.70 s (9.00) | 1.10 | 1.25 + 0.00 |",
				"This run: +10.0% (not met). The median of the rounds' own ratios, which drift from round to round (other work on the machine, say) cancels out of: +28.3%.",
				"| interpreter start: → the driver's first line | — | 0.01 s (0.01) | +0.01 s |",
				"| imports (`rtrain`, `rtrain.torch`): → `fit()` called | — | 0.79 s (0.79) | +0.79 s |",
				"(for the driver: serializing the function, the version check, then `rtrain fit`'s own start: the workers', their imports, the process group) | 2.00 s (2.50) | 2.00 s (2.00) | +0.00 s |",
				"| the train function, on rank 0 | 4.50 s (4.50) | 4.30 s (5.60) | -0.20 s |",
				"| teardown: → exit (the process group, the workers, the result) | 0.50 s (1.00) | 0.60 s (0.60) | +0.10 s |",
				"| end to end | 7.00 s (8.00) | 7.70 s (9.00) | +0.70 s |",
				"(`python -c pass`) 13 ms; `import rtrain.torch` 60 ms; serializing the train function and its config with cloudpickle 0.8 ms;",
				"(`rtrain version`, once a process) 10.0 ms.",
				"pays `import torch`, 800 ms here,",
			},
			absent: []string{"Other work"},
		},
		{
			name:  "other work on the machine",
			drv:   []driverRun{drvBusy(7.7, 0.5), drvBusy(7.7, 0.5), drvBusy(9, 0.25)},
			wants: []string{"| `TorchTrainer.fit()` | 7.70 s (9.00) | 1.10 | 1.25 + 0.50 |", "Other work on the machine took 0.50 of them during these runs"},
		},
		{
			name:  "within the goal",
			drv:   []driverRun{drv(7.21), drv(7.21), drv(7.5)},
			wants: []string{"| `TorchTrainer.fit()` | 7.21 s (7.50) | 1.03 | 1.25 + 0.00 |", "This run: +3.0% (met).", "cancels out of: +7.1%."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sec := renderDriver(driverReport{measured: "Measured on X.", version: "v1.2.3", rounds: 3, cores: 2},
				map[string][]driverRun{drvFit: fit, drvDriver: tt.drv}, probes)
			if sec.heading != driverHeading {
				t.Errorf("heading = %q, want %q", sec.heading, driverHeading)
			}
			requireContains(t, sec.body, append([]string{"Measured on X.\n\n", "binary under test (v1.2.3)", "(with 3 rounds, p95 is the slowest run)", "out of its 2 cores"}, tt.wants...)...)
			for _, a := range tt.absent {
				if strings.Contains(sec.body, a) {
					t.Errorf("has %q:\n%s", a, sec.body)
				}
			}
		})
	}
}

func TestParseDriverStamps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name    string
		in      string
		want    map[string]time.Duration
		wantErr bool
	}{
		{name: "script", in: "body 1001.500000\ndone 1005.250000\n", want: map[string]time.Duration{"body": 1500 * time.Millisecond, "done": 5250 * time.Millisecond}},
		{name: "driver, blank line", in: "start 1000.010000\nfit 1000.800000\n\nbody 1002.000000\ndone 1006.000000\n", want: map[string]time.Duration{"start": 10 * time.Millisecond, "fit": 800 * time.Millisecond, "body": 2 * time.Second, "done": 6 * time.Second}},
		{name: "no time", in: "body\n", wantErr: true},
		{name: "bad time", in: "body soon\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDriverStamps(tt.in, t0)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseDriverStamps error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			// Float seconds round to within a microsecond.
			round := cmp.Transformer("µs", func(d time.Duration) time.Duration { return d.Round(time.Microsecond) })
			if diff := cmp.Diff(tt.want, got, round); diff != "" {
				t.Errorf("parseDriverStamps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseBenchLines(t *testing.T) {
	var imp, pickle time.Duration
	into := map[string]*time.Duration{"import": &imp, "pickle": &pickle}
	n, err := parseBenchLines("noise\nBENCH import 0.750000\nBENCH other 1\nBENCH pickle 0.000700\n", into)
	if err != nil || n != 2 || imp != 750*time.Millisecond || pickle != 700*time.Microsecond {
		t.Errorf("parseBenchLines = %d, %v; import %v, pickle %v; want 2, nil, 750ms, 700µs", n, err, imp, pickle)
	}
	if _, err := parseBenchLines("BENCH import fast\n", into); err == nil {
		t.Error("parseBenchLines of a bad figure: no error")
	}
}
