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
	peers    []peer
	missing  []string // a note for each peer that is not installed
	// loads are the machine's 1-minute load average before each run.
	loads []float64
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

// ckptRow is a row of the table: a contender, what it is, and for an
// upload or a download, the package's contender it is compared with.
type ckptRow struct {
	key, what string
	versus    string // ckUpload, ckDownload or ""
	// ref is a row that moves nothing, shown for what it costs: no
	// ratio to the limits.
	ref bool
}

// ckptRows are the table's rows in order: the limits, the uploads and the
// downloads (package checkpoint's first, then the peers'), and the commit
// to a directory.
func ckptRows(peers []peer) []ckptRow {
	rows := []ckptRow{
		{ckDisk, "limit: plain write + fsync", "", false},
		{ckTCP, "limit: io.Copy over loopback TCP", "", false},
		{ckHash, "reference: SHA-256 of every file, one core", "", true},
		{ckUpload, "upload: `Run.Commit` to MinIO", ckUpload, false},
	}
	for _, p := range peers {
		rows = append(rows, ckptRow{peerUpKey(p), "upload: " + p.upName, ckUpload, false})
	}
	rows = append(rows, ckptRow{ckDownload, "download: `Run.Download` from MinIO", ckDownload, false})
	for _, p := range peers {
		rows = append(rows, ckptRow{peerDownKey(p), "download: " + p.downName, ckDownload, false})
	}
	return append(rows, ckptRow{ckLocal, "`Run.Commit` to a local directory", "", false})
}

// fastestPeer is the peer whose runs of key(p) have the highest median
// throughput; ok is false without peers.
func fastestPeer(peers []peer, samples map[string][]ckptSample, key func(peer) string) (best peer, ok bool) {
	var bestTook time.Duration
	for _, p := range peers {
		ss := samples[key(p)]
		if len(ss) == 0 {
			continue
		}
		if t := summarize(took(ss)).median; !ok || t < bestTook {
			best, bestTook, ok = p, t, true
		}
	}
	return best, ok
}

// renderCheckpoint is the checkpoint section and its chart,
// bench-checkpoint.svg.
func renderCheckpoint(r ckptReport, samples map[string][]ckptSample) section {
	rows := ckptRows(r.peers)
	rates := map[string]rate{}
	for _, row := range rows {
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
	// How package checkpoint's contender fared against key's, round by
	// round: above 1, the package was faster.
	ours := func(versus, key string) float64 { return pairedRatio(took(samples[versus]), took(samples[key])) }

	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", r.measured)
	fmt.Fprintf(&b, "A %s checkpoint shaped like a sharded one (%s; random bytes) moved every way below, every file on the same disk (%s). "+
		"Two are the limits, with no checkpoint code in the way: the same bytes written with plain write calls to one new file and fsynced, "+
		"and sent with a plain `io.Copy` over a loopback TCP connection to a reader that drops them. "+
		"Three are package `checkpoint`: a commit to a MinIO server on 127.0.0.1 (its data on the same disk; the version `scripts/install-deps.sh` pins), "+
		"a download of a checkpoint stored there, and a commit to a local directory. "+
		"A commit hashes every file (SHA-256), stores it durably, checks the stored size and writes the manifest last; a download checks every file's SHA-256.\n\n",
		fmtBytes(r.size), describeLayout(r.layout), r.disk)
	writePeers(&b, r)
	fmt.Fprintf(&b, "Every run starts alike: dirty pages flushed (`sync`) so that no run pays for the writeback of the one before, "+
		"and the files it reads (the checkpoint, or MinIO's copy of it) in the page cache, as a checkpoint a training script has just written is. "+
		"MB/s are 10⁶ bytes a second of the median run; p95 in parentheses is the slow tail, the run at the 95th percentile of time. "+
		"A ratio is taken within each round, whose runs came one after another, and the median over the rounds is shown, so that drift from round to round cancels out. "+
		"The lower limit of a round is the slower of its two limit runs (the disk write in %d of %d rounds). "+
		"\"`checkpoint` ÷ this\" is package `checkpoint`'s throughput over the row's, upload against upload and download against download: above 1.00 the package was faster. "+
		"\"Cores busy\" is the CPU time used during the run over its wall time (median), by the client (this process, and a peer's command), by MinIO and by everything else on the machine, out of its %d cores.\n\n",
		diskLower, len(disk), r.cores)
	fmt.Fprintf(&b, "| contender | MB/s | ÷ lower limit | ÷ disk write | `checkpoint` ÷ this | cores busy: client + MinIO + other |\n|---|---|---|---|---|---|\n")
	for _, row := range rows {
		rt := rates[row.key]
		vs, lim, dsk := "—", "—", "—"
		if row.versus != "" {
			vs = fmt.Sprintf("%.2f", ours(row.versus, row.key))
		}
		if !row.ref {
			lim, dsk = fmt.Sprintf("%.2f", vsLower(row.key)), fmt.Sprintf("%.2f", vsDisk(row.key))
		}
		fmt.Fprintf(&b, "| %s | %.0f (%.0f) | %s | %s | %s | %s |\n", row.what, rt.median, rt.p95, lim, dsk, vs, coresBusy(samples[row.key]))
	}
	up, down := vsLower(ckUpload), vsLower(ckDownload)
	fmt.Fprintf(&b, "\nGoal (issue: checkpoint throughput): upload and download ≥ %.2f of the lower limit. This run: upload %.2f (%s), download %.2f (%s).\n",
		ckptGoal, up, metOrNot(up), down, metOrNot(down))
	upPeer, okUp := fastestPeer(r.peers, samples, peerUpKey)
	downPeer, okDown := fastestPeer(r.peers, samples, peerDownKey)
	if okUp && okDown {
		upVs, downVs := ours(ckUpload, peerUpKey(upPeer)), ours(ckDownload, peerDownKey(downPeer))
		fmt.Fprintf(&b, "\nGoal (issue 21): `Run.Commit` and `Run.Download` at or above the fastest peer. This run: upload %.2f of %s, the fastest peer uploading (%s); download %.2f of %s, the fastest downloading (%s).\n",
			upVs, upPeer.upName, peerMet(upVs), downVs, downPeer.downName, peerMet(downVs))
	}
	fmt.Fprintf(&b, "\n![checkpoint throughput as a ratio of the lower limit and of the disk write](bench-checkpoint.svg)\n\n")
	upBusy := coresBusy(samples[ckUpload])
	fmt.Fprintf(&b, "Where the time goes (perf, and the cores-busy column): the limits involve no server, but the S3 contenders share the %d cores with MinIO, "+
		"which does its own work on every byte (an MD5 of each part for its ETag, a bitrot hash, copies) and kept %.2f cores busy during the upload against the client's %.2f. "+
		"%s; in a real deployment the server has cores of its own. "+
		"Part size (16 or 64 MiB) and parallelism (8 files × 4 parts, or 4 × 2) made no difference beyond the noise. "+
		"What did: over plain http, minio-go signed every payload chunk with SHA-256, computed by the client and again by MinIO on top of the manifest's SHA-256; "+
		"uploads now end with a CRC32C trailer that the server checks instead (`checkpoint/s3`), about a fifth more upload throughput here. "+
		"A download does not fsync (it can be repeated, a commit cannot), so it may beat the disk-write limit, which does; "+
		"and a commit to a directory copies several files at once and fsyncs each when it is done, so the disk writes back while the rest is copied, where the one-file plain write flushes only at its end: it may beat that limit too.\n", r.cores, upBusy.server, upBusy.client, boundBy(upBusy, r.cores))
	if okUp && okDown {
		writeBounds(&b, r, samples, upPeer, downPeer)
	}
	if other := maxOther(samples); other >= 0.25 {
		fmt.Fprintf(&b, "\nOther work on the machine took up to %.2f of its %d cores (the median of a contender's runs) during these rounds, so the figures spread more than the contenders' own would; the ratios, taken within each round, suffer least.\n", other, r.cores)
	}
	if len(r.loads) > 0 {
		fmt.Fprintf(&b, "\nThe machine's 1-minute load average before a run (its own earlier runs, and anything else on the machine, running or waiting on the disk) was %.1f at the median run, %.1f at the most.\n",
			median(r.loads), slices.Max(r.loads))
	}

	c := chart{
		title:    "checkpoint throughput ÷ limit (median; higher is better)",
		series:   []string{"÷ lower limit", "÷ disk write"},
		marks:    []mark{{ckptGoal, fmt.Sprintf("goal %.2f", ckptGoal)}, {1, "1.0"}},
		scaleMax: 1.25,
	}
	for _, row := range rows {
		if row.versus == "" && row.key != ckLocal {
			continue
		}
		c.rows = append(c.rows, chartRow{chartLabel(row.key, r.peers), []float64{vsLower(row.key), vsDisk(row.key)}})
	}
	return section{heading: checkpointHeading, body: b.String(), charts: map[string][]byte{"bench-checkpoint.svg": c.svg()}}
}

// writeBounds says, from the CPU the runs used, what bounds the upload and
// the download against the fastest peers, and what was tried.
func writeBounds(b *strings.Builder, r ckptReport, samples map[string][]ckptSample, upPeer, downPeer peer) {
	gb := float64(r.size) / 1e9
	// CPU-seconds per GB, the median over the runs.
	perGB := func(key string, of func(ckptSample) time.Duration) float64 {
		var v []float64
		for _, s := range samples[key] {
			v = append(v, of(s).Seconds()/gb)
		}
		return median(v)
	}
	client := func(s ckptSample) time.Duration { return s.cpuClient }
	server := func(s ckptSample) time.Duration { return s.cpuServer }
	secPerGB := func(key string) float64 { return summarize(took(samples[key])).median.Seconds() / gb }

	fmt.Fprintf(b, "\nThe upload is bound by MinIO's share of the cores. Per GB, MinIO spent %.2f CPU-seconds on `Run.Commit`'s upload and %.2f on the upload of %s, the clients %.2f and %.2f: "+
		"most of the work is the server's, whoever the client is. "+
		"perf on MinIO during `Run.Commit`'s uploads (this machine, before these rounds): 44%% of its samples in the kernel copying the bytes into the page cache, 30%% in MD5 for the ETag, 2%% in the bitrot hash, 1%% in CRC32C. "+
		"A client that signs its payloads with SHA-256, as every peer here does over http, has MinIO check that on top.\n",
		perGB(ckUpload, server), perGB(peerUpKey(upPeer), server), upPeer.upName, perGB(ckUpload, client), perGB(peerUpKey(upPeer), client))

	hash := perGB(ckHash, client)
	rest := perGB(peerDownKey(downPeer), client) + perGB(peerDownKey(downPeer), server)
	fmt.Fprintf(b, "\nThe download is bound by the SHA-256 it checks. `Run.Download`'s client spent %.2f CPU-seconds per GB, that of %s %.2f; the SHA-256 of the same bytes alone takes %.2f (the reference row, %.2f s per GB on one core, where %s took %.2f s per GB for its whole download). "+
		"Were the rest of a download's work, client and MinIO, as light as that peer's (%.2f CPU-seconds per GB), one that also hashes every byte would still need (%.2f + %.2f) ÷ %d cores = %.2f s per GB here. "+
		"%s\n",
		perGB(ckDownload, client), downPeer.downName, perGB(peerDownKey(downPeer), client), hash, secPerGB(ckHash), downPeer.downName, secPerGB(peerDownKey(downPeer)),
		rest, rest, hash, r.cores, (rest+hash)/float64(r.cores), checkingPeers(r.peers, samples))

	b.WriteString("\nTried for issue 21 and not kept, each measured in the same rounds against the code as it is: " +
		"hashing a file in the same pass as its upload (minio-go's sequential-part path reading through an `io.TeeReader` into the SHA-256) cost the client more CPU, for the copy into the part buffer, and saved no time; " +
		"hashing beside the upload, so that the server need not wait for a large file's hash, moved the time 1–3%, inside the noise; " +
		"downloading each file in one GET and hashing it on the way, rather than in parallel ranges hashed after from the page cache, was slower (0.91 of it over 20 rounds) and its client spent more CPU (1.36 against 1.16 CPU-seconds per GiB).\n")
}

// checkingPeers compares Run.Download with the peers that check what they
// download, as it does.
func checkingPeers(peers []peer, samples map[string][]ckptSample) string {
	var checking []peer
	var names []string
	for _, p := range peers {
		if p.checksDownloads {
			checking = append(checking, p)
			names = append(names, p.name)
		}
	}
	best, ok := fastestPeer(checking, samples, peerDownKey)
	if !ok {
		return ""
	}
	ratio := pairedRatio(took(samples[ckDownload]), took(samples[peerDownKey(best)]))
	return fmt.Sprintf("Against the peers that check what they download (%s), `Run.Download` is %.2f of the fastest.", strings.Join(names, ", "), ratio)
}

// writePeers says which tools were measured beside package checkpoint,
// which versions, how they were set up, and which are missing.
func writePeers(b *strings.Builder, r ckptReport) {
	if len(r.peers) == 0 && len(r.missing) == 0 {
		return
	}
	var tools []string
	for _, p := range r.peers {
		tools = append(tools, fmt.Sprintf("%s (%s): %s; it %s", p.name, p.version, p.how, p.checks))
	}
	b.WriteString("Beside them, the tools people already move checkpoints with, each uploading the same directory to the same MinIO, and downloading the copy it stored there itself before the rounds (so that it checks what it would check of its own uploads), in the same rounds: ")
	b.WriteString(strings.Join(tools, "; "))
	b.WriteString(". A command runs with none of this machine's `AWS_*` or `RCLONE_*` variables but the credentials and region it is given. " +
		"The settings are the ones each tool's documentation gives for throughput, picked by a sweep on this machine (three interleaved runs of each, other work on the machine at the time): " +
		"the AWS CLI with 16 MB parts at 16 or 32 requests beat its defaults (10 requests, 8 MB) and 64 MB parts at 8; " +
		"rclone's `--transfers` 4, 8 or 16, `--s3-upload-concurrency` 4 or 8 and chunks of 5M, 16M or 64M were within the noise of each other.")
	for _, m := range r.missing {
		fmt.Fprintf(b, " Not measured: %s.", m)
	}
	b.WriteString("\n\n")
}

// chartLabel is a short name of contender key, for the chart.
func chartLabel(key string, peers []peer) string {
	switch key {
	case ckUpload:
		return "Run.Commit upload"
	case ckDownload:
		return "Run.Download"
	case ckLocal:
		return "commit to a directory"
	}
	for _, p := range peers {
		switch key {
		case peerUpKey(p):
			return p.key + " upload"
		case peerDownKey(p):
			return p.key + " download"
		}
	}
	return key
}

// maxOther is the most cores other work kept busy, over the contenders
// (the median of each one's runs).
func maxOther(samples map[string][]ckptSample) float64 {
	var m float64
	for _, ss := range samples {
		m = max(m, coresBusy(ss).other)
	}
	return m
}

func peerMet(ratio float64) string {
	if ratio >= 1 {
		return "met"
	}
	return "not met"
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
