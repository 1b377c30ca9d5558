package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ckptGoal is the goal: upload and download at least this share
// of the lower limit.
const ckptGoal = 0.70

// ckptReport is what the checkpoint section says besides the samples.
type ckptReport struct {
	size     int64
	layout   []fileSpec
	disk     string // describeDisk of the benchmark's directory
	measured string // the section's first line
	cores    int    // the machine's
}

// ckptSample is one run of a contender: how long it took and the CPU
// time this process (the client), the MinIO server and the whole machine
// used meanwhile.
type ckptSample struct {
	took, cpuClient, cpuServer, cpuAll time.Duration
}

// rate is throughput in MB/s (10⁶ bytes a second): of the median run, and
// of the run at the 95th percentile of time, the slow tail.
type rate struct{ median, p95 float64 }

func throughput(size int64, ds []time.Duration) rate {
	st := summarize(ds)
	return rate{median: mbPerSec(size, st.median), p95: mbPerSec(size, st.p95)}
}

func mbPerSec(size int64, d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }

// ckptRows are the table's rows in order, with what each one is.
var ckptRows = []struct{ key, what string }{
	{ckDisk, "limit: plain write + fsync"},
	{ckTCP, "limit: io.Copy over loopback TCP"},
	{ckUpload, "upload: `Run.Commit` to MinIO"},
	{ckDownload, "download: `Run.Download` from MinIO"},
	{ckLocal, "`Run.Commit` to a local directory"},
}

// renderCheckpoint is the checkpoint section and its chart,
// bench-checkpoint.svg.
func renderCheckpoint(r ckptReport, samples map[string][]ckptSample) section {
	rates := map[string]rate{}
	for _, row := range ckptRows {
		rates[row.key] = throughput(r.size, took(samples[row.key]))
	}
	// The lower limit of a round is the slower of its two limit runs.
	disk := took(samples[ckDisk])
	lower := make([]time.Duration, len(disk))
	diskLower := 0
	for i, d := range disk {
		lower[i] = max(d, samples[ckTCP][i].took)
		if d >= samples[ckTCP][i].took {
			diskLower++
		}
	}
	vsLower := func(key string) float64 { return pairedRatio(took(samples[key]), lower) }
	vsDisk := func(key string) float64 { return pairedRatio(took(samples[key]), disk) }

	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", r.measured)
	fmt.Fprintf(&b, "A %s checkpoint shaped like a sharded one (%s; random bytes) moved five ways, every file on the same disk (%s). "+
		"Two are the limits, with no checkpoint code in the way: the same bytes written with plain write calls to one new file and fsynced, "+
		"and sent with a plain `io.Copy` over a loopback TCP connection to a reader that drops them. "+
		"Three are package `checkpoint`: a commit to a MinIO server on 127.0.0.1 (its data on the same disk; the version `scripts/install-deps.sh` pins), "+
		"a download of a checkpoint stored there, and a commit to a local directory. "+
		"A commit hashes every file (SHA-256), stores it durably, checks the stored size and writes the manifest last; a download checks every file's SHA-256.\n\n",
		fmtBytes(r.size), describeLayout(r.layout), r.disk)
	fmt.Fprintf(&b, "Every run starts alike: dirty pages flushed (`sync`) so that no run pays for the writeback of the one before, "+
		"and the checkpoint and MinIO's copy of it in the page cache, as a checkpoint a training script has just written is. "+
		"MB/s are 10⁶ bytes a second of the median run; p95 in parentheses is the slow tail, the run at the 95th percentile of time. "+
		"A ratio is taken within each round, whose runs came one after another, and the median over the rounds is shown, so that drift from round to round cancels out. "+
		"The lower limit of a round is the slower of its two limit runs (the disk write in %d of %d rounds). "+
		"\"Cores busy\" is the CPU time used during the run over its wall time (median), by this process (the client), by MinIO and by everything else on the machine, out of its %d cores.\n\n",
		diskLower, len(disk), r.cores)
	fmt.Fprintf(&b, "| contender | MB/s | ÷ lower limit | ÷ disk write | cores busy: client + MinIO + other |\n|---|---|---|---|---|\n")
	for _, row := range ckptRows {
		rt := rates[row.key]
		fmt.Fprintf(&b, "| %s | %.0f (%.0f) | %.2f | %.2f | %s |\n", row.what, rt.median, rt.p95, vsLower(row.key), vsDisk(row.key), coresBusy(samples[row.key]))
	}
	up, down := vsLower(ckUpload), vsLower(ckDownload)
	fmt.Fprintf(&b, "\nGoal (issue: checkpoint throughput): upload and download ≥ %.2f of the lower limit. This run: upload %.2f (%s), download %.2f (%s).\n\n",
		ckptGoal, up, metOrNot(up), down, metOrNot(down))
	fmt.Fprintf(&b, "![checkpoint throughput as a ratio of the lower limit and of the disk write](bench-checkpoint.svg)\n\n")
	upBusy := coresBusy(samples[ckUpload])
	fmt.Fprintf(&b, "Where the time goes (perf, and the cores-busy column): the limits involve no server, but the S3 contenders share the %d cores with MinIO, "+
		"which does its own work on every byte (an MD5 of each part for its ETag, a bitrot hash, copies) and kept %.2f cores busy during the upload against the client's %.2f. "+
		"%s; in a real deployment the server has cores of its own. "+
		"Part size (16 or 64 MiB) and parallelism (8 files × 4 parts, or 4 × 2) made no difference beyond the noise. "+
		"What did: over plain http, minio-go signed every payload chunk with SHA-256, computed by the client and again by MinIO on top of the manifest's SHA-256; "+
		"uploads now end with a CRC32C trailer that the server checks instead (`checkpoint/s3`), about a fifth more upload throughput here. "+
		"A download does not fsync (it can be repeated, a commit cannot), so it may beat the disk-write limit, which does; "+
		"and a commit to a directory copies several files at once and fsyncs each when it is done, so the disk writes back while the rest is copied, where the one-file plain write flushes only at its end: it may beat that limit too.\n", r.cores, upBusy.server, upBusy.client, boundBy(upBusy, r.cores))

	c := chart{
		title:  "checkpoint throughput ÷ limit (median; higher is better)",
		series: []string{"÷ lower limit", "÷ disk write"},
		rows: []chartRow{
			{"upload to MinIO", []float64{up, vsDisk(ckUpload)}},
			{"download from MinIO", []float64{down, vsDisk(ckDownload)}},
			{"commit to a directory", []float64{vsLower(ckLocal), vsDisk(ckLocal)}},
		},
		marks:    []mark{{ckptGoal, fmt.Sprintf("goal %.2f", ckptGoal)}, {1, "1.0"}},
		scaleMax: 1.25,
	}
	return section{heading: checkpointHeading, body: b.String(), charts: map[string][]byte{"bench-checkpoint.svg": c.svg()}}
}

// pairedRatio is the median over rounds of a contender's throughput over
// an anchor's in the same round: the anchor's time over the contender's.
// Round i is element i of both.
func pairedRatio(contender, anchor []time.Duration) float64 {
	rs := make([]float64, min(len(contender), len(anchor)))
	for i := range rs {
		rs[i] = anchor[i].Seconds() / contender[i].Seconds()
	}
	return median(rs)
}

func took(ss []ckptSample) []time.Duration {
	ds := make([]time.Duration, len(ss))
	for i, s := range ss {
		ds[i] = s.took
	}
	return ds
}

// busy is how many cores a run kept busy on average: CPU time over wall
// time, by the client, by the server and by everything else.
type busy struct{ client, server, other float64 }

func (b busy) String() string { return fmt.Sprintf("%.2f + %.2f + %.2f", b.client, b.server, b.other) }

// coresBusy is the median, over the runs, of each share of busy.
func coresBusy(ss []ckptSample) busy {
	c, s, o := make([]float64, len(ss)), make([]float64, len(ss)), make([]float64, len(ss))
	for i, x := range ss {
		c[i] = x.cpuClient.Seconds() / x.took.Seconds()
		s[i] = x.cpuServer.Seconds() / x.took.Seconds()
		// The machine's count ticks apart from the processes', so a
		// nearly idle machine can come out a little below their sum.
		o[i] = max(0, (x.cpuAll-x.cpuClient-x.cpuServer).Seconds()/x.took.Seconds())
	}
	return busy{median(c), median(s), median(o)}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// boundBy says what held the upload back, from the cores that were busy:
// nearly all of them, the CPU; and whether other work took a share.
func boundBy(b busy, cores int) string {
	switch {
	case b.client+b.server+b.other < 0.75*float64(cores):
		return "The cores were not all busy in this run, so waiting, on the disk or the network, held the upload back too"
	case b.other >= 0.25*float64(cores):
		return fmt.Sprintf("So here the upload is bound by CPU, which other work on the machine took %.2f cores of in this run, not by the disk or the network", b.other)
	default:
		return "So here the upload is bound by CPU, not by the disk or the network"
	}
}

func metOrNot(ratio float64) string {
	if ratio >= ckptGoal {
		return "met"
	}
	return "not met"
}

// describeLayout says how many files of which size: "4 of 240 MiB, 32 of
// 2 MiB, 2 of 16 KiB".
func describeLayout(layout []fileSpec) string {
	var sizes []string
	count := map[string]int{}
	for _, f := range layout {
		s := fmtBytes(f.size)
		if count[s] == 0 {
			sizes = append(sizes, s)
		}
		count[s]++
	}
	parts := make([]string, len(sizes))
	for i, s := range sizes {
		parts[i] = fmt.Sprintf("%d of %s", count[s], s)
	}
	return fmt.Sprintf("%d files: %s", len(layout), strings.Join(parts, ", "))
}

// fmtBytes writes n in the largest binary unit it fills, to three
// significant figures or so: "1 GiB", "240 MiB", "1.5 KiB".
func fmtBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, u := float64(n), 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	s := fmt.Sprintf("%.1f", v)
	if v >= 100 {
		s = fmt.Sprintf("%.0f", v)
	}
	return strings.TrimSuffix(s, ".0") + " " + units[u]
}
