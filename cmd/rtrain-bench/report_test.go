package main

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name     string
		in       []time.Duration
		med, p95 time.Duration
	}{
		{"one", ms(5), 5 * time.Millisecond, 5 * time.Millisecond},
		{"odd, unsorted", ms(9, 1, 5), 5 * time.Millisecond, 9 * time.Millisecond},
		{"even", ms(4, 1, 2, 3), 2500 * time.Microsecond, 4 * time.Millisecond},
		{"ten runs: p95 is the slowest", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 100), 5500 * time.Microsecond, 100 * time.Millisecond},
		{"twenty runs: p95 is the 19th", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 200), 10500 * time.Microsecond, 19 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := summarize(tt.in)
			if got.median != tt.med || got.p95 != tt.p95 {
				t.Errorf("summarize = median %s p95 %s, want %s and %s", got.median, got.p95, tt.med, tt.p95)
			}
		})
	}
}

func TestReportAndChart(t *testing.T) {
	out := t.TempDir()
	s := func(first, done int) sample {
		return sample{first: time.Duration(first) * time.Millisecond, done: time.Duration(done) * time.Millisecond}
	}
	samples := map[key][]sample{
		{"rtrain", 2}:   {s(1000, 1200), s(1100, 1300)},
		{"torchrun", 2}: {s(2000, 6000), s(2000, 6000)},
		{"floor", 2}:    {s(900, 1100), s(1000, 1200)},
	}
	if err := writeReport(launchOptions{rounds: 2, workers: []int{2}, python: "/nonexistent", out: out}, samples); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| 2 | submit → first step | 1.05 s (1.10) | 2.00 s (2.00) | 0.95 s (1.00) | 0.53 | 1.11 |", "bench-launch.svg"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("BENCHMARKS.md lacks %q:\n%s", want, md)
		}
	}
	f, err := os.Open(filepath.Join(out, "bench-launch.svg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("chart is not well-formed SVG: %v", err)
		}
	}
}
