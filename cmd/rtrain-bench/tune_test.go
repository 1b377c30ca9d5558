package main

import (
	"strings"
	"testing"
	"time"
)

func TestTuneSection(t *testing.T) {
	o := tuneOptions{trials: 160, length: time.Second, cpus: 16}
	lat := func(s ...float64) []time.Duration {
		var ds []time.Duration
		for _, v := range s {
			ds = append(ds, secs(v))
		}
		return ds
	}
	tests := []struct {
		name   string
		sweep  tuneSweep
		cores  int
		wants  []string
		absent []string
	}{
		{
			name:  "bound by the cores",
			sweep: tuneSweep{fit: secs(16), took: secs(20), cpuJob: secs(32), cpuAll: secs(34), latency: lat(1, 2, 3), wave: lat(0.3, 0.5)},
			cores: 2,
			wants: []string{
				"| 160 × 1s | 16 | 10.0 s | 16.00 s (16.00) | 1.60 | 1.60 + 0.10 | 200 ms |",
				"This run: 1.60× (not met). On this machine the goal cannot be met: each trial costs 200 ms of CPU",
				"so 160 trials need 16.0 s of the machine's 2 cores",
				"| a trial of the first wave: the runner starts its job → the trainable's first line (2 trials started together, none waiting for room) | 0.40 s (0.50) |",
				"(5 runs, on an idle machine) | 0.08 s (0.10) |",
			},
		},
		{
			name:   "met",
			sweep:  tuneSweep{fit: secs(10.3), took: secs(12), cpuJob: secs(12), cpuAll: secs(12), latency: lat(0.1), wave: lat(0.1)},
			cores:  16,
			wants:  []string{"This run: 1.03× (met)."},
			absent: []string{"cannot be met", "Other work"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := renderTune(tuneReport{measured: "Measured on x", version: "v", o: o, cores: tt.cores}, []tuneSweep{tt.sweep}, lat(0.07, 0.08, 0.08, 0.09, 0.1))
			for _, w := range tt.wants {
				if !strings.Contains(s.body, w) {
					t.Errorf("missing %q in\n%s", w, s.body)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(s.body, a) {
					t.Errorf("has %q in\n%s", a, s.body)
				}
			}
		})
	}
}
