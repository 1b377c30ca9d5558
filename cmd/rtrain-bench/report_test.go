package main

import (
	"context"
	"encoding/xml"
	"fmt"
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

// requireSVG fails t unless svg is well-formed XML.
func requireSVG(t *testing.T, svg []byte) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(string(svg)))
	for {
		if _, err := dec.Token(); err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("chart is not well-formed SVG: %v\n%s", err, svg)
		}
	}
}

func requireContains(t *testing.T, doc string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(doc, want) {
			t.Errorf("lacks %q:\n%s", want, doc)
		}
	}
}

func TestLaunchSection(t *testing.T) {
	s := func(first, done int) sample {
		return sample{first: time.Duration(first) * time.Millisecond, done: time.Duration(done) * time.Millisecond}
	}
	samples := map[key][]sample{
		{"rtrain", 2}:   {s(1000, 1200), s(1100, 1300)},
		{"torchrun", 2}: {s(2000, 6000), s(2000, 6000)},
		{"floor", 2}:    {s(900, 1100), s(1000, 1200)},
	}
	sec := renderLaunch(launchOptions{rounds: 2, workers: []int{2}}, "Measured on X.", samples)
	if sec.heading != launchHeading {
		t.Errorf("heading = %q, want %q", sec.heading, launchHeading)
	}
	requireContains(t, sec.body, "Measured on X.\n\n", "| 2 | submit → first step | 1.05 s (1.10) | 2.00 s (2.00) | 0.95 s (1.00) | 0.53 | 1.11 |", "bench-launch.svg")
	requireSVG(t, sec.charts["bench-launch.svg"])
}

// ckptSamples gives every contender runs taking the given seconds, with
// the client, the server and other work each busy for the given shares
// of each run.
func ckptSamples(secs map[string][]float64, b busy) map[string][]ckptSample {
	out := map[string][]ckptSample{}
	for k, ss := range secs {
		for _, s := range ss {
			d := time.Duration(s * float64(time.Second))
			share := func(f float64) time.Duration { return time.Duration(f * float64(d)) }
			out[k] = append(out[k], ckptSample{took: d, cpuClient: share(b.client), cpuServer: share(b.server), cpuAll: share(b.client + b.server + b.other)})
		}
	}
	return out
}

func TestCheckpointSection(t *testing.T) {
	const size = 1e9 // so that MB/s is 1000 / seconds
	tests := []struct {
		name  string
		secs  map[string][]float64
		busy  busy
		wants []string
	}{
		{
			name: "disk is the lower limit",
			secs: map[string][]float64{
				ckDisk:     {1, 1.25, 1}, // 1000 MB/s, p95 800
				ckTCP:      {0.5, 0.5, 0.5},
				ckUpload:   {4, 2, 2}, // 500, p95 250
				ckDownload: {1.25, 1.25, 1.25},
				ckLocal:    {1, 1, 1},
				ckHash:     {0.5, 0.5, 0.5},
			},
			busy: busy{0.5, 1.25, 0},
			wants: []string{
				"| limit: plain write + fsync | 1000 (800) | 1.00 | 1.00 | — | 0.50 + 1.25 + 0.00 |",
				"| limit: io.Copy over loopback TCP | 2000 (2000) | 2.00 | 2.00 |",
				"| upload: `Run.Commit` to MinIO | 500 (250) | 0.50 | 0.50 | 1.00 |",
				"| download: `Run.Download` from MinIO | 800 (800) | 0.80 | 0.80 | 1.00 |",
				"| `Run.Commit` to a local directory | 1000 (1000) | 1.00 | 1.00 | — |",
				"| reference: SHA-256 of every file, one core | 2000 (2000) | — | — | — |",
				"the slower of its two limit runs (the disk write in 3 of 3 rounds)",
				"upload 0.50 (not met), download 0.80 (met)",
				"Measured on X.\n\n", "A 954 MiB checkpoint", "38 files", "(ext4 on /dev/x, mounted at /)",
				"kept 1.25 cores busy during the upload against the client's 0.50",
				"So here the upload is bound by CPU, not by",
			},
		},
		{
			name: "loopback is the lower limit",
			secs: map[string][]float64{
				ckDisk:     {0.5},
				ckTCP:      {1},
				ckUpload:   {1},
				ckDownload: {2},
				ckLocal:    {0.5},
				ckHash:     {0.5},
			},
			busy: busy{0.25, 0.5, 0.25},
			wants: []string{
				"| 0.25 + 0.50 + 0.25 |", "The cores were not all busy",
				"| limit: plain write + fsync | 2000 (2000) | 2.00 | 1.00 | — |",
				"| upload: `Run.Commit` to MinIO | 1000 (1000) | 1.00 | 0.50 | 1.00 |",
				"(the disk write in 0 of 1 rounds)",
				"upload 1.00 (met), download 0.50 (not met)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sec := renderCheckpoint(ckptReport{
				size: size, layout: checkpointLayout(1 << 30), disk: "ext4 on /dev/x, mounted at /", measured: "Measured on X.", cores: 2,
			}, ckptSamples(tt.secs, tt.busy))
			if sec.heading != checkpointHeading {
				t.Errorf("heading = %q, want %q", sec.heading, checkpointHeading)
			}
			requireContains(t, sec.body, tt.wants...)
			svg := sec.charts["bench-checkpoint.svg"]
			requireSVG(t, svg)
			requireContains(t, string(svg), "goal 0.70", "Run.Commit upload", "÷ disk write")
		})
	}
}

func TestPairedRatio(t *testing.T) {
	secs := func(fs ...float64) []time.Duration {
		var out []time.Duration
		for _, f := range fs {
			out = append(out, time.Duration(f*float64(time.Second)))
		}
		return out
	}
	// Round 2 was slow for both; the ratio of the medians (3 s ÷ 2.5 s)
	// would say the contender beat the anchor, which it did in one round
	// only.
	if got := pairedRatio(secs(2, 6, 2.5), secs(1, 3, 3)); got != 0.5 {
		t.Errorf("pairedRatio = %v, want 0.5", got)
	}
	if got := pairedRatio(secs(1, 1), secs(2)); got != 2 {
		t.Errorf("pairedRatio of uneven rounds = %v, want 2 (the rounds both have)", got)
	}
}

func TestCoresBusyAndMedian(t *testing.T) {
	ss := []ckptSample{
		{took: time.Second, cpuClient: 500 * time.Millisecond, cpuServer: 2 * time.Second, cpuAll: 3 * time.Second},
		{took: 2 * time.Second, cpuClient: 2 * time.Second, cpuServer: time.Second, cpuAll: 3 * time.Second},
		// The machine's count can trail the processes' by a tick.
		{took: time.Second, cpuClient: 0, cpuServer: time.Second, cpuAll: 990 * time.Millisecond},
	}
	if got, want := coresBusy(ss), (busy{0.5, 1, 0}); got != want {
		t.Errorf("coresBusy = %v, want %v", got, want)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median = %v, want 2.5", got)
	}
	if got := median(nil); got != 0 {
		t.Errorf("median of nothing = %v, want 0", got)
	}
}

func TestBoundBy(t *testing.T) {
	tests := []struct {
		b    busy
		want string
	}{
		{busy{0.5, 1.3, 0}, "bound by CPU, not by"},
		{busy{0.4, 0.8, 0.7}, "other work on the machine took 0.70 cores"},
		{busy{0.3, 0.6, 0.2}, "not all busy"},
	}
	for _, tt := range tests {
		if got := boundBy(tt.b, 2); !strings.Contains(got, tt.want) {
			t.Errorf("boundBy(%v) = %q, want it to say %q", tt.b, got, tt.want)
		}
	}
}

const legacyDoc = "# Benchmarks\n\n" +
	"Written by `make bench` (`go run ./cmd/rtrain-bench`) on 2026-11-28 14:14 UTC. Do not edit by hand.\n\n" +
	"Machine: 2 cores (Xeon), go1.26.8, torch 1.13.0a0. Every figure is the median of 10 runs, p95 in parentheses; within each round ...\n\n" +
	"## Launch overhead\n\nThe same script.\n\n| a | b |\n"

func TestMergeDoc(t *testing.T) {
	launch := section{heading: launchHeading, body: "Measured on L.\n\nlaunch figures\n"}
	ckpt := section{heading: checkpointHeading, body: "Measured on C.\n\ncheckpoint figures\n"}
	tests := []struct {
		name   string
		old    string
		fresh  []section
		want   []string // in this order
		absent []string
	}{
		{
			name:  "no document yet",
			fresh: []section{launch},
			want:  []string{docHeader, "\n## Launch overhead\n\nMeasured on L.\n\nlaunch figures\n", "\n## Checkpoint throughput\n\nNot measured yet: `go run ./cmd/rtrain-bench -only checkpoint` measures it.\n"},
		},
		{
			name:   "both fresh",
			old:    legacyDoc,
			fresh:  []section{ckpt, launch},
			want:   []string{"## Launch overhead\n\nMeasured on L.", "## Checkpoint throughput\n\nMeasured on C."},
			absent: []string{"The same script.", "2026-11-28"},
		},
		{
			name:   "the other section is kept as it was",
			old:    mergeDoc("", []section{launch, {heading: checkpointHeading, body: "Measured on old C.\n\nold\n"}}),
			fresh:  []section{ckpt},
			want:   []string{"## Launch overhead\n\nMeasured on L.\n\nlaunch figures\n\n## Checkpoint", "Measured on C.\n\ncheckpoint figures\n"},
			absent: []string{"old C."},
		},
		{
			name:  "a kept section of an old document takes the header's facts along",
			old:   legacyDoc,
			fresh: []section{ckpt},
			want: []string{
				"## Launch overhead\n\nMeasured on 2026-11-28 14:14 UTC — 2 cores (Xeon), go1.26.8, torch 1.13.0a0. Every figure is the median of 10 runs, p95 in parentheses.\n\nThe same script.\n\n| a | b |\n",
				"## Checkpoint throughput\n\nMeasured on C.",
			},
			absent: []string{"Machine:"},
		},
		{
			name:  "a section this version does not know stays, after the others",
			old:   docHeader + "\n## Old stuff\n\nkeep me\n",
			fresh: []section{launch, ckpt},
			want:  []string{"## Launch overhead", "## Checkpoint throughput", "## Old stuff\n\nkeep me\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeDoc(tt.old, tt.fresh)
			if !strings.HasPrefix(got, docHeader) {
				t.Errorf("does not start with the header:\n%s", got)
			}
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("lacks %q (or has it out of order):\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, a := range tt.absent {
				if strings.Contains(got, a) {
					t.Errorf("still has %q:\n%s", a, got)
				}
			}
			// Merging is stable: the result merged again with nothing
			// fresh is itself.
			if again := mergeDoc(got, nil); again != got {
				t.Errorf("merging again changed the document:\n%s\nthen:\n%s", got, again)
			}
		})
	}
}

func TestWriteDoc(t *testing.T) {
	out := filepath.Join(t.TempDir(), "docs")
	svg := []byte("<svg/>\n")
	if err := writeDoc(out, []section{{heading: launchHeading, body: "first\n", charts: map[string][]byte{"bench-launch.svg": svg}}}); err != nil {
		t.Fatal(err)
	}
	if err := writeDoc(out, []section{{heading: checkpointHeading, body: "second\n", charts: map[string][]byte{"bench-checkpoint.svg": svg}}}); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	requireContains(t, string(md), "## Launch overhead\n\nfirst\n", "## Checkpoint throughput\n\nsecond\n")
	for _, name := range []string{"bench-launch.svg", "bench-checkpoint.svg"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("chart: %v", err)
		}
	}
}

func TestCheckpointLayout(t *testing.T) {
	for _, size := range []int64{1 << 20, 256<<20 + 3, 1 << 30, 10<<30 + 12345} {
		t.Run(fmtBytes(size), func(t *testing.T) {
			layout := checkpointLayout(size)
			var sum int64
			seen := map[string]bool{}
			for _, f := range layout {
				if f.size <= 0 {
					t.Errorf("%s has %d bytes", f.path, f.size)
				}
				if seen[f.path] {
					t.Errorf("%s twice", f.path)
				}
				seen[f.path] = true
				sum += f.size
			}
			if sum != size {
				t.Errorf("files add up to %d bytes, want %d", sum, size)
			}
			if len(layout) != 38 {
				t.Errorf("%d files, want 38", len(layout))
			}
		})
	}
	if got, want := describeLayout(checkpointLayout(1<<30)), "38 files: 4 of 240 MiB, 32 of 2 MiB, 2 of 16 KiB"; got != want {
		t.Errorf("describeLayout = %q, want %q", got, want)
	}
}

func TestFmtBytes(t *testing.T) {
	tests := map[int64]string{0: "0 B", 1000: "1000 B", 1024: "1 KiB", 1536: "1.5 KiB", 240 << 20: "240 MiB", 1 << 30: "1 GiB", 1e9: "954 MiB"}
	for n, want := range tests {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "1GiB", want: 1 << 30},
		{in: "256MiB", want: 256 << 20},
		{in: "64 KiB", want: 64 << 10},
		{in: "2GB", want: 2e9},
		{in: "5MB", want: 5e6},
		{in: "1KB", want: 1000},
		{in: "123B", want: 123},
		{in: "4096", want: 4096},
		{in: "", err: true},
		{in: "GiB", err: true},
		{in: "-1MiB", err: true},
		{in: "0", err: true},
		{in: "1.5GiB", err: true},
		{in: "1TiB", err: true},
		{in: "99999999999GiB", err: true},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestMountOf(t *testing.T) {
	mounts := "/dev/vda / ext4 rw,relatime 0 0\n" +
		"proc /proc proc rw 0 0\n" +
		"tmpfs /tmp tmpfs rw 0 0\n" +
		"/dev/vdb /data/my\\040disk xfs rw 0 0\n"
	tests := map[string]string{
		"/work/x":           "ext4 on /dev/vda, mounted at /",
		"/tmp/bench":        "tmpfs on tmpfs, mounted at /tmp",
		"/tmpfoo":           "ext4 on /dev/vda, mounted at /",
		"/data/my disk/a":   "xfs on /dev/vdb, mounted at /data/my disk",
		"/data/my diskette": "ext4 on /dev/vda, mounted at /",
	}
	for dir, want := range tests {
		if got := mountOf(mounts, dir); got != want {
			t.Errorf("mountOf(%q) = %q, want %q", dir, got, want)
		}
	}
	if got := mountOf("", "/x"); got != "unknown file system" {
		t.Errorf("mountOf with no table = %q", got)
	}
}

func TestParseStatCPU(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 250 and 50 ticks; the command
	// name has a space and a parenthesis in it.
	stat := "1234 (mini o) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 1000 10 0 0 0"
	if got, want := parseStatCPU(stat), 3*time.Second; got != want {
		t.Errorf("parseStatCPU = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1234 (x) S 1", "1234 (x) S 1 1 1 0 -1 0 0 0 0 0 a b"} {
		if got := parseStatCPU(bad); got != 0 {
			t.Errorf("parseStatCPU(%q) = %v, want 0", bad, got)
		}
	}
	procStat := "cpu  100 5 50 1000 200 1 2 3 40 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
	if got, want := parseMachineCPU(procStat), 1610*time.Millisecond; got != want {
		t.Errorf("parseMachineCPU = %v, want %v (all but idle and iowait)", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 3 4 5 6 7 x\n"} {
		if got := parseMachineCPU(bad); got != 0 {
			t.Errorf("parseMachineCPU(%q) = %v, want 0", bad, got)
		}
	}
	if processCPU(os.Getpid()) < 0 || machineCPU() < 0 {
		t.Error("negative CPU time for this process")
	}
}

// The limits move exactly the checkpoint's bytes.
func TestLimits(t *testing.T) {
	dir := t.TempDir()
	var files []string
	var want strings.Builder
	for i, n := range []int{0, 10, 3 << 20} {
		data := strings.Repeat(fmt.Sprint(i), n)
		want.WriteString(data)
		p := filepath.Join(dir, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	ctx := context.Background()
	dst := filepath.Join(dir, "plain.bin")
	if err := plainWrite(ctx, files, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Errorf("plainWrite wrote %d bytes, not the %d of the files in order", len(got), want.Len())
	}
	if err := loopbackCopy(ctx, files, int64(want.Len())); err != nil {
		t.Errorf("loopbackCopy: %v", err)
	}
	if err := loopbackCopy(ctx, files, int64(want.Len())+1); err == nil {
		t.Error("loopbackCopy did not notice a short transfer")
	}
}

func TestParseReportBench(t *testing.T) {
	out := "rtrain: starting 1 worker on 1 node\n[rank 0] BENCH copy 0.080000\n[rank 0] BENCH report 0.090000\n[checkpoint] /x/checkpoint_000001 (256.0MiB)\n[rank 0] BENCH report 0.070000\n[rank 0] BENCH copy 0.100000\n"
	copies, reports, err := parseReportBench(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) != 2 || len(reports) != 2 || copies[1] != 100*time.Millisecond || reports[0] != 90*time.Millisecond {
		t.Fatalf("copies %v, reports %v", copies, reports)
	}
	s := renderReport(reportOptions{rounds: 2, python: "/nonexistent"}, copies, reports)
	if !strings.Contains(s.body, "| `rtrain.report(..., checkpoint=...)` | 80 ms (90) | 0.89 |") {
		t.Errorf("table:\n%s", s.body)
	}
	if _, _, err := parseReportBench("[rank 0] BENCH copy 0.1\n"); err == nil {
		t.Error("a copy without its report was accepted")
	}
	if onlyName(reportHeading) != "report" {
		t.Errorf("-only name of %q is %q", reportHeading, onlyName(reportHeading))
	}
}
