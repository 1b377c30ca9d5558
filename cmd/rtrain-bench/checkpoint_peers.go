package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sync/errgroup"
)

// s3Target is where the peers put the checkpoint: the benchmark's MinIO
// and bucket, under root, the prefix package checkpoint's storage uses.
type s3Target struct {
	endpoint             string // http://127.0.0.1:PORT
	accessKey, secretKey string
	bucket, root         string
}

// url is the s3:// URL of prefix under the root, with a trailing slash.
func (t s3Target) url(prefix string) string {
	return "s3://" + t.bucket + "/" + t.root + "/" + prefix + "/"
}

// peer is a tool people already move checkpoints with, measured beside
// package checkpoint: the same files to the same MinIO in the same rounds.
type peer struct {
	key string // in contender keys and the log
	// name is the table's name for it, Markdown; upName and downName
	// for its upload and its download.
	name, upName, downName string
	// how says how it ran (command line and settings), for the section;
	// checks, what it checks of the bytes it moves.
	how, checks string
	// checksDownloads is whether it checks the content of what it
	// downloads, as Run.Download does.
	checksDownloads bool
	version         string
	// upload copies the directory src to prefix; download copies
	// what is under prefix to the directory dst, which it creates.
	upload   func(ctx context.Context, src, prefix string) error
	download func(ctx context.Context, prefix, dst string) error
}

// peerOptions are the tools to look for, and how to tune them.
type peerOptions struct {
	// aws and rclone are the binaries; "" looks for them (see findAWS).
	aws, rclone string
}

// Tuning of the peers, from each tool's documentation, chosen by a sweep
// on the benchmark machine (docs/BENCHMARKS.md says which values were
// tried). Every peer gets 16 MiB parts, the part size package checkpoint
// uses, and up to 8 files at once where it takes a file count.
const (
	// awsConcurrency is the AWS CLI's max_concurrent_requests (default 10):
	// requests in flight, parts and files together.
	awsConcurrency = 16
	awsChunk       = "16MB" // multipart_chunksize (default 8MB); AWS's MB are MiB
	rcloneChunk    = "16M"  // --s3-chunk-size (default 5M)
	// rcloneTransfers is --transfers (default 4), files at once;
	// rcloneUploadConcurrency is --s3-upload-concurrency (default 4),
	// parts of one file at once.
	rcloneTransfers         = 8
	rcloneUploadConcurrency = 4
	// minioPool is how many files the second minio-go loop moves at once,
	// as many as package checkpoint does.
	minioPool = 8
)

// findPeers returns the peers that are installed, and a note for each
// that is not. work is a directory for their configuration files.
func findPeers(o peerOptions, t s3Target, work string) (peers []peer, missing []string, err error) {
	tools := []struct {
		bin, missing string
		peer         func(bin string, t s3Target, work string) (peer, error)
	}{
		{findAWS(o.aws), "the AWS CLI (`aws`; Debian's awscli) is not installed, so it was left out", awsPeer},
		{lookPath(o.rclone, "rclone"), "rclone (Debian's rclone) is not installed, so it was left out", rclonePeer},
	}
	for _, tool := range tools {
		if tool.bin == "" {
			missing = append(missing, tool.missing)
			continue
		}
		p, err := tool.peer(tool.bin, t, work)
		if err != nil {
			return nil, nil, err
		}
		peers = append(peers, p)
	}
	seq, pool, err := minioGoPeers(t)
	if err != nil {
		return nil, nil, err
	}
	return append(peers, seq, pool), missing, nil
}

// findAWS is bin if given, else Debian's /usr/bin/aws, else the first aws
// on PATH: a PATH may put a pip-installed AWS CLI v1 first, and the
// benchmark measures the one Debian's awscli package installs (v2).
func findAWS(bin string) string {
	if bin != "" {
		return lookPath(bin, "")
	}
	if fi, err := os.Stat("/usr/bin/aws"); err == nil && fi.Mode()&0o111 != 0 {
		return "/usr/bin/aws"
	}
	return lookPath("", "aws")
}

// lookPath is bin, or name, found on PATH; "" if not found.
func lookPath(bin, name string) string {
	if bin == "" {
		bin = name
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return ""
	}
	return p
}

// peerEnv is this process's environment without the variables that would
// change how an S3 tool behaves (the machine's AWS_CA_BUNDLE, a profile,
// rclone's own settings), plus extra.
func peerEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "RCLONE_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// runTool runs a peer's command and, when it fails, returns the end of
// what it printed.
func runTool(ctx context.Context, env []string, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		tail := strings.TrimSpace(string(out))
		if len(tail) > 2000 {
			tail = "..." + tail[len(tail)-2000:]
		}
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, tail)
	}
	return nil
}

// toolVersion is the first line a tool prints for its version flag.
func toolVersion(bin string, args ...string) string {
	cmd := exec.Command(bin, args...)
	cmd.Env = peerEnv()
	out, err := cmd.Output()
	if err != nil {
		return "version unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// awsPeer is `aws s3 cp --recursive` with its S3 transfer settings in a
// config file of its own.
func awsPeer(bin string, t s3Target, work string) (peer, error) {
	cfg := filepath.Join(work, "aws-config")
	conf := fmt.Sprintf("[default]\ns3 =\n  max_concurrent_requests = %d\n  multipart_chunksize = %s\n", awsConcurrency, awsChunk)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return peer{}, err
	}
	env := peerEnv(
		"AWS_ACCESS_KEY_ID="+t.accessKey,
		"AWS_SECRET_ACCESS_KEY="+t.secretKey,
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE="+cfg,
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(work, "aws-credentials-none"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
	)
	cp := func(ctx context.Context, from, to string) error {
		return runTool(ctx, env, bin, "--endpoint-url", t.endpoint, "s3", "cp", "--recursive", "--only-show-errors", "--no-progress", from, to)
	}
	return peer{
		key:    "aws",
		name:   "AWS CLI `aws s3 cp --recursive`",
		upName: "AWS CLI `aws s3 cp --recursive`", downName: "AWS CLI `aws s3 cp --recursive`",
		how:     fmt.Sprintf("`max_concurrent_requests = %d`, `multipart_chunksize = %s` (defaults 10 and 8MB)", awsConcurrency, awsChunk),
		checks:  "signs each upload's payload with SHA-256 over http, which MinIO checks; checks nothing it downloads",
		version: toolVersion(bin, "--version"),
		upload: func(ctx context.Context, src, prefix string) error {
			return cp(ctx, src, t.url(prefix))
		},
		download: func(ctx context.Context, prefix, dst string) error {
			return cp(ctx, t.url(prefix), dst)
		},
	}, nil
}

// rclonePeer is `rclone copy` to an s3 remote of provider Minio.
func rclonePeer(bin string, t s3Target, work string) (peer, error) {
	cfg := filepath.Join(work, "rclone.conf")
	conf := fmt.Sprintf("[bench]\ntype = s3\nprovider = Minio\nenv_auth = false\naccess_key_id = %s\nsecret_access_key = %s\nregion = us-east-1\nendpoint = %s\n",
		t.accessKey, t.secretKey, t.endpoint)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return peer{}, err
	}
	env := peerEnv()
	remote := func(prefix string) string { return "bench:" + t.bucket + "/" + t.root + "/" + prefix }
	tuning := []string{"--transfers", fmt.Sprint(rcloneTransfers), "--s3-upload-concurrency", fmt.Sprint(rcloneUploadConcurrency), "--s3-chunk-size", rcloneChunk}
	copyArgs := func(from, to string) []string {
		return append([]string{"--config", cfg, "--quiet", "copy", from, to}, tuning...)
	}
	return peer{
		key:  "rclone",
		name: "rclone `copy`", upName: "rclone `copy`", downName: "rclone `copy`",
		how: fmt.Sprintf("`--transfers %d --s3-upload-concurrency %d --s3-chunk-size %s` (defaults 4, 4 and 5M)",
			rcloneTransfers, rcloneUploadConcurrency, rcloneChunk),
		checksDownloads: true,
		checks:          "computes each file's MD5 before it uploads it and stores it with the object (`--s3-disable-checksum` left off), signs payloads with SHA-256 over http, and checks the MD5 of what it downloads",
		version:         toolVersion(bin, "version"),
		upload: func(ctx context.Context, src, prefix string) error {
			return runTool(ctx, env, bin, copyArgs(src, remote(prefix))...)
		},
		download: func(ctx context.Context, prefix, dst string) error {
			return runTool(ctx, env, bin, copyArgs(remote(prefix), dst)...)
		},
	}, nil
}

// minioGoPeers are minio-go's FPutObject and FGetObject with their
// defaults, one call per file: a plain loop, and the same loop minioPool
// files at once. They share one client made with minio.New's defaults.
func minioGoPeers(t s3Target) (seq, pool peer, err error) {
	client, err := minio.New(strings.TrimPrefix(t.endpoint, "http://"), &minio.Options{
		Creds:  credentials.NewStaticV4(t.accessKey, t.secretKey, ""),
		Region: "us-east-1",
	})
	if err != nil {
		return peer{}, peer{}, err
	}
	version := "minio-go " + moduleVersion("github.com/minio/minio-go/v7")
	object := func(prefix, rel string) string { return path.Join(t.root, prefix, rel) }
	upload := func(limit int) func(ctx context.Context, src, prefix string) error {
		return func(ctx context.Context, src, prefix string) error {
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(limit)
			err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, err := filepath.Rel(src, p)
				if err != nil {
					return err
				}
				g.Go(func() error {
					_, err := client.FPutObject(gctx, t.bucket, object(prefix, filepath.ToSlash(rel)), p, minio.PutObjectOptions{})
					return err
				})
				return nil
			})
			return errors.Join(err, g.Wait())
		}
	}
	download := func(limit int) func(ctx context.Context, prefix, dst string) error {
		return func(ctx context.Context, prefix, dst string) error {
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(limit)
			var listErr error
			base := object(prefix, "") + "/"
			for obj := range client.ListObjectsIter(gctx, t.bucket, minio.ListObjectsOptions{Prefix: base, Recursive: true}) {
				if obj.Err != nil {
					listErr = obj.Err
					break
				}
				target := filepath.Join(dst, filepath.FromSlash(strings.TrimPrefix(obj.Key, base)))
				g.Go(func() error {
					return client.FGetObject(gctx, t.bucket, obj.Key, target, minio.GetObjectOptions{})
				})
			}
			return errors.Join(listErr, g.Wait())
		}
	}
	seq = peer{
		key:    "minio-go",
		name:   "minio-go `FPutObject` / `FGetObject`, a file at a time",
		upName: "minio-go `FPutObject`, a file at a time", downName: "minio-go `FGetObject`, a file at a time",
		how:     "`minio.New` and `PutObjectOptions{}` as they come (4 parts of a file at once, 16 MiB parts)",
		checks:  "signs each upload's payload with SHA-256 over http, which MinIO checks; checks nothing it downloads",
		version: version,
		upload:  upload(1), download: download(1),
	}
	pool = peer{
		key:      "minio-go-8",
		name:     fmt.Sprintf("minio-go `FPutObject` / `FGetObject`, %d files at once", minioPool),
		upName:   fmt.Sprintf("minio-go `FPutObject`, %d files at once", minioPool),
		downName: fmt.Sprintf("minio-go `FGetObject`, %d files at once", minioPool),
		how:      fmt.Sprintf("the same calls from %d goroutines", minioPool),
		checks:   seq.checks,
		version:  version,
		upload:   upload(minioPool), download: download(minioPool),
	}
	return seq, pool, nil
}

// moduleVersion is the version of module mod this binary was built
// with; "" when the build does not say.
func moduleVersion(mod string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == mod {
			return d.Version
		}
	}
	return ""
}
