package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/internal/minioserver"
)

type ckptOptions struct {
	rounds int
	// size is the checkpoint's total size in bytes.
	size int64
	// dir holds every file the benchmark writes: the checkpoint, its
	// copies, MinIO's data. All on one disk, the one measured.
	dir   string
	peers peerOptions
}

// The contenders of the checkpoint benchmark, by key. The first two are
// the limits: what the disk and the loopback network do with no checkpoint
// code in the way.
const (
	ckDisk     = "disk"
	ckTCP      = "tcp"
	ckUpload   = "upload"
	ckDownload = "download"
	ckLocal    = "local"
	// ckHash is no move but what every commit and download must compute:
	// the SHA-256 of each file, on one core, from the page cache.
	ckHash = "sha256"
)

// ioBuf is the buffer size of the plain copies, large enough that system
// calls cost nothing next to the bytes.
const ioBuf = 1 << 20

// fileSpec is one file of the benchmark checkpoint.
type fileSpec struct {
	path string // slash-separated, relative
	size int64
}

// checkpointLayout shapes size bytes like a sharded training checkpoint:
// four large rank shards, 32 small files (2 MiB each at 1 GiB: extra
// state, per-layer tensors) and two tiny ones (RNG state, trainer state).
// The sizes add up to size exactly; size must be at least 1 MiB.
func checkpointLayout(size int64) []fileSpec {
	tiny := min(16<<10, size/1024)
	small := size / 512
	const shards, smalls = 4, 32
	large := (size - smalls*small - 2*tiny) / shards
	rest := size - smalls*small - 2*tiny - shards*large
	var out []fileSpec
	for i := range shards {
		n := large
		if i == 0 {
			n += rest
		}
		out = append(out, fileSpec{fmt.Sprintf("shard_%d.pt", i), n})
	}
	for i := range smalls {
		out = append(out, fileSpec{fmt.Sprintf("extra/layer_%02d.pt", i), small})
	}
	return append(out, fileSpec{"rng_state.pt", tiny}, fileSpec{"trainer_state.json", tiny})
}

// writeCheckpoint writes layout under dir with random bytes (which no
// layer can compress) and fsyncs every file, and returns the absolute
// paths.
func writeCheckpoint(dir string, layout []fileSpec) ([]string, error) {
	rng := rand.NewChaCha8([32]byte{'r', 't', 'r', 'a', 'i', 'n'})
	buf := make([]byte, ioBuf)
	var paths []string
	for _, f := range layout {
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		out, err := os.Create(p)
		if err != nil {
			return nil, err
		}
		for left := f.size; left > 0; {
			n := min(left, int64(len(buf)))
			_, _ = rng.Read(buf[:n])
			if _, err := out.Write(buf[:n]); err != nil {
				out.Close()
				return nil, err
			}
			left -= n
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return nil, err
		}
		if err := out.Close(); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// ckptBench is the state the contenders share.
type ckptBench struct {
	o        ckptOptions
	work     string   // the benchmark's directory, removed at the end
	src      string   // the checkpoint directory
	files    []string // its files
	minioDir string

	serverPid int // MinIO's, for its CPU time
	// storedDir holds MinIO's copy of the checkpoint that Run.Download
	// reads, to warm.
	storedDir string
	peers     []peer

	target   s3Target
	s3       checkpoint.Storage
	upload   *checkpoint.Run // committed to, then emptied, every round
	download *checkpoint.Run // holds the checkpoint that is downloaded
	stored   checkpoint.Manifest
	local    *checkpoint.Run
	localDir string // the local storage's root
}

// ckptContender moves the checkpoint once; run is timed, cleanup is not.
// reads are the directories whose files it reads, brought into the page
// cache before each run.
type ckptContender struct {
	key     string
	reads   []string
	run     func(ctx context.Context) error
	cleanup func(ctx context.Context) error
}

// Contender keys of the peers: what they upload goes to the prefix
// peerUpPrefix, and they download the copy they stored under peerPrefix
// before the rounds.
func peerUpKey(p peer) string    { return "up-" + p.key }
func peerDownKey(p peer) string  { return "down-" + p.key }
func peerPrefix(p peer) string   { return "peer-" + p.key }
func peerUpPrefix(p peer) string { return "peer-" + p.key + "-up" }

// peerDir holds MinIO's copy of what p stored, to warm.
func (b *ckptBench) peerDir(p peer) string {
	return filepath.Join(b.minioDir, b.target.bucket, b.target.root, peerPrefix(p))
}

func (b *ckptBench) contenders() []ckptContender {
	plain := filepath.Join(b.work, "plain.bin")
	dl := filepath.Join(b.work, "download")
	removeAll := func(p string) func(context.Context) error {
		return func(context.Context) error { return os.RemoveAll(p) }
	}
	src := []string{b.src}
	cs := []ckptContender{
		{ckDisk, src, func(ctx context.Context) error { return plainWrite(ctx, b.files, plain) }, removeAll(plain)},
		{ckTCP, src, func(ctx context.Context) error { return loopbackCopy(ctx, b.files, b.o.size) }, func(context.Context) error { return nil }},
		{ckUpload, src, func(ctx context.Context) error {
			_, err := b.upload.Commit(ctx, 1, b.src, nil, 4)
			return err
		}, b.deletePrefix(b.upload.Name())},
		{ckDownload, []string{b.storedDir}, func(ctx context.Context) error { return b.download.Download(ctx, b.stored, dl) }, removeAll(dl)},
		{ckHash, src, func(ctx context.Context) error { return hashAll(ctx, b.files) }, func(context.Context) error { return nil }},
		{ckLocal, src, func(ctx context.Context) error {
			_, err := b.local.Commit(ctx, 1, b.src, nil, 4)
			return err
		}, removeAll(filepath.Join(b.localDir, b.local.Name()))},
	}
	for _, p := range b.peers {
		pdl := filepath.Join(b.work, "download-"+p.key)
		cs = append(cs,
			ckptContender{peerUpKey(p), src, func(ctx context.Context) error { return p.upload(ctx, b.src, peerUpPrefix(p)) }, b.deletePrefix(peerUpPrefix(p))},
			ckptContender{peerDownKey(p), []string{b.peerDir(p)}, func(ctx context.Context) error { return p.download(ctx, peerPrefix(p), pdl) }, removeAll(pdl)},
		)
	}
	return cs
}

// deletePrefix removes every object under prefix/ of the benchmark's
// storage root.
func (b *ckptBench) deletePrefix(prefix string) func(context.Context) error {
	return func(ctx context.Context) error {
		objs, err := b.s3.List(ctx, prefix+"/")
		if err != nil {
			return err
		}
		keys := make([]string, len(objs))
		for i, o := range objs {
			keys[i] = o.Key
		}
		return b.s3.Delete(ctx, keys...)
	}
}

// runCheckpoint measures the checkpoint contenders and renders their
// section.
func runCheckpoint(ctx context.Context, o ckptOptions, log *slog.Logger) (section, error) {
	work, err := os.MkdirTemp(o.dir, "rtrain-bench-ckpt-")
	if err != nil {
		return section{}, err
	}
	defer os.RemoveAll(work)
	b := &ckptBench{o: o, work: work, src: filepath.Join(work, "checkpoint"), minioDir: filepath.Join(work, "minio"), localDir: filepath.Join(work, "local")}
	layout := checkpointLayout(o.size)
	log.Info("writing the checkpoint", "dir", b.src, "bytes", o.size, "files", len(layout))
	if b.files, err = writeCheckpoint(b.src, layout); err != nil {
		return section{}, err
	}

	srv, err := minioserver.Start(ctx, b.minioDir)
	if err != nil {
		return section{}, err
	}
	defer srv.Close()
	b.serverPid = srv.Pid()
	bucket, err := srv.MakeBucket(ctx)
	if err != nil {
		return section{}, err
	}
	b.target = s3Target{endpoint: srv.Endpoint, accessKey: srv.AccessKey, secretKey: srv.SecretKey, bucket: bucket, root: "bench"}
	b.s3, err = checkpoint.Open(ctx, "s3://"+bucket+"/"+b.target.root, checkpoint.S3Options{
		Endpoint: srv.Endpoint, Region: "us-east-1", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
	})
	if err != nil {
		return section{}, err
	}
	if c, ok := b.s3.(io.Closer); ok {
		defer c.Close()
	}
	local, err := checkpoint.Open(ctx, b.localDir, checkpoint.S3Options{})
	if err != nil {
		return section{}, err
	}
	if b.upload, err = checkpoint.NewRun(b.s3, "upload"); err != nil {
		return section{}, err
	}
	if b.download, err = checkpoint.NewRun(b.s3, "download"); err != nil {
		return section{}, err
	}
	if b.local, err = checkpoint.NewRun(local, "commit"); err != nil {
		return section{}, err
	}
	log.Info("storing the checkpoint to download", "endpoint", srv.Endpoint)
	if b.stored, err = b.download.Commit(ctx, 1, b.src, nil, 4); err != nil {
		return section{}, err
	}
	// MinIO keeps an object in a directory of the object's name under the
	// bucket's; nothing breaks if that changes, the copy just goes unwarmed.
	b.storedDir = filepath.Join(b.minioDir, bucket, b.target.root, b.download.Name())
	if _, err := os.Stat(b.storedDir); err != nil {
		log.Warn("MinIO's copy of the checkpoint is not where expected; it will not be read into the page cache before each run", "err", err)
	}
	peers, missing, err := findPeers(o.peers, b.target, work)
	if err != nil {
		return section{}, err
	}
	for _, note := range missing {
		log.Warn("peer skipped", "why", note)
	}
	// Each peer downloads the copy it stored itself, so that it checks
	// what it would check of its own uploads (rclone: the MD5 it stores).
	for _, p := range peers {
		log.Info("storing the checkpoint with a peer, to download", "peer", p.key, "version", p.version)
		if err := p.upload(ctx, b.src, peerPrefix(p)); err != nil {
			return section{}, fmt.Errorf("%s: %w", p.key, err)
		}
	}
	b.peers = peers

	cs := b.contenders()
	samples := map[string][]ckptSample{}
	// One warm-up run of each, unmeasured: connections, MinIO's metadata
	// caches, the Go runtime's heap.
	for _, c := range cs {
		if _, err := b.measure(ctx, c); err != nil {
			return section{}, err
		}
	}
	var loads []float64
	for round := range o.rounds {
		for _, i := range rand.Perm(len(cs)) {
			c := cs[i]
			if l, ok := loadAverage(); ok {
				loads = append(loads, l)
			}
			s, err := b.measure(ctx, c)
			if err != nil {
				return section{}, err
			}
			samples[c.key] = append(samples[c.key], s)
			log.Info("run", "round", round+1, "contender", c.key, "took", s.took.Round(time.Millisecond),
				"MB/s", fmt.Sprintf("%.0f", mbPerSec(o.size, s.took)), "cpu_client", s.cpuClient.Round(time.Millisecond), "cpu_server", s.cpuServer.Round(time.Millisecond), "cpu_all", s.cpuAll.Round(time.Millisecond))
		}
	}
	return renderCheckpoint(ckptReport{
		size:     o.size,
		layout:   layout,
		disk:     describeDisk(work),
		measured: measuredLine(o.rounds, ""),
		cores:    runtime.NumCPU(),
		peers:    peers,
		missing:  missing,
		loads:    loads,
	}, samples), nil
}

// measure runs c once from the same starting state as every other
// contender: no dirty pages left by the one before (their writeback would
// be billed to c), and the bytes c reads — the checkpoint, or MinIO's
// copy of it — in the page cache, as a checkpoint a training script has
// just written is. What c wrote is removed afterwards. The client's CPU
// time is this process's and that of the children it waited for meanwhile
// (a peer's command).
func (b *ckptBench) measure(ctx context.Context, c ckptContender) (ckptSample, error) {
	syscall.Sync()
	for _, dir := range c.reads {
		if err := readAll(dir); err != nil {
			return ckptSample{}, err
		}
	}
	self0, server0, all0 := clientCPU(), processCPU(b.serverPid), machineCPU()
	t0 := time.Now()
	err := c.run(ctx)
	s := ckptSample{
		took:      time.Since(t0),
		cpuClient: clientCPU() - self0,
		cpuServer: processCPU(b.serverPid) - server0,
		cpuAll:    machineCPU() - all0,
	}
	if err != nil {
		return ckptSample{}, fmt.Errorf("%s: %w", c.key, err)
	}
	if err := c.cleanup(ctx); err != nil {
		return ckptSample{}, fmt.Errorf("%s: clean up: %w", c.key, err)
	}
	return s, nil
}

// selfCPU is the CPU time this process has used, user and system.
func selfCPU() time.Duration { return rusageCPU(syscall.RUSAGE_SELF) }

// clientCPU is selfCPU and the CPU time of the children this process has
// waited for.
func clientCPU() time.Duration { return selfCPU() + rusageCPU(syscall.RUSAGE_CHILDREN) }

func rusageCPU(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// userHZ is the unit of the CPU times in /proc/PID/stat; Linux fixes it
// at 100 on every architecture it runs Go on.
const userHZ = 100

// processCPU is the CPU time process pid has used, all its threads, user
// and system; 0 if /proc cannot say.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	return parseStatCPU(string(b))
}

// machineCPU is the CPU time every process on the machine has used, from
// /proc/stat: all but idle and iowait; 0 if /proc cannot say.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	return parseMachineCPU(string(b))
}

// loadAverage is the machine's 1-minute load average, from /proc/loadavg.
func loadAverage() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	l, err := strconv.ParseFloat(f[0], 64)
	return l, err == nil
}

// parseMachineCPU reads the "cpu" line of /proc/stat: user, nice, system,
// idle, iowait, irq, softirq, steal, then guest times that user and nice
// already hold.
func parseMachineCPU(stat string) time.Duration {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / userHZ
}

// parseStatCPU reads utime and stime, fields 14 and 15 of a
// /proc/PID/stat line, counting after the command name in parentheses,
// which may hold spaces.
func parseStatCPU(stat string) time.Duration {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3, the state.
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * time.Second / userHZ
}

// readAll reads every regular file under dir, to bring it into the page
// cache.
func readAll(dir string) error {
	buf := make([]byte, ioBuf)
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // not there (any more)
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyBuffer(io.Discard, onlyReader{f}, buf)
		return err
	})
}

// onlyReader hides a reader's WriterTo and a file's ReaderFrom, so that
// io.Copy moves the bytes through the buffer given, by plain read and
// write calls, not copy_file_range or sendfile.
type onlyReader struct{ io.Reader }

type onlyWriter struct{ io.Writer }

// hashAll computes the SHA-256 of each file, one after another.
func hashAll(ctx context.Context, files []string) error {
	return copyEach(ctx, files, func() io.Writer { return sha256.New() })
}

// copyEach copies each file in turn to the writer next returns for it, by
// plain read and write calls through one buffer.
func copyEach(ctx context.Context, files []string, next func() io.Writer) error {
	buf := make([]byte, ioBuf)
	for _, p := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(onlyWriter{next()}, onlyReader{in}, buf)
		in.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// plainWrite is the disk's limit: the checkpoint's bytes read and written
// to one new file with plain write calls, then fsync.
func plainWrite(ctx context.Context, files []string, dst string) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := copyEach(ctx, files, func() io.Writer { return out }); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

// loopbackCopy is the network's limit: the checkpoint's files sent with a
// plain io.Copy over one loopback TCP connection to a reader that drops
// them. It returns once the reader has every byte.
func loopbackCopy(ctx context.Context, files []string, size int64) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	type result struct {
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer conn.Close()
		n, err := io.CopyBuffer(onlyWriter{io.Discard}, onlyReader{conn}, make([]byte, ioBuf))
		got <- result{n, err}
	}()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		<-got
		return err
	}
	sendErr := func() error {
		defer conn.Close()
		for _, p := range files {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(conn, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}()
	r := <-got
	switch {
	case sendErr != nil:
		return sendErr
	case r.err != nil:
		return r.err
	case r.n != size:
		return fmt.Errorf("loopback: received %d bytes, sent %d", r.n, size)
	}
	return nil
}

// describeDisk says which file system holds dir, from /proc/self/mounts:
// "ext4 on /dev/vda, mounted at /".
func describeDisk(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "unknown file system"
	}
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "unknown file system"
	}
	return mountOf(string(b), abs)
}

// mountOf picks, from a mounts table, the mount that holds abs: the one
// with the longest mount point that is abs or a parent of it.
func mountOf(mounts, abs string) string {
	best, desc := -1, "unknown file system"
	for _, line := range strings.Split(mounts, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		// Mount points escape spaces and the like as octal (\040).
		mp := f[1]
		if s, err := strconv.Unquote(`"` + mp + `"`); err == nil {
			mp = s
		}
		if mp != "/" && abs != mp && !strings.HasPrefix(abs, mp+"/") {
			continue
		}
		if len(mp) > best {
			best, desc = len(mp), fmt.Sprintf("%s on %s, mounted at %s", f[2], f[0], mp)
		}
	}
	return desc
}

// parseSize reads a byte count: a plain number or one with a unit, B,
// KiB, MiB, GiB, or the decimal KB, MB, GB ("1GiB", "256MiB").
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size; want e.g. 1GiB or 256MiB", s)
	}
	return n * mult, nil
}
