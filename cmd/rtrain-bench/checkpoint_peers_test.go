package main

import (
	"slices"
	"strings"
	"testing"
)

func TestCheckpointSectionWithPeers(t *testing.T) {
	const size = 1e9 // so that MB/s is 1000 / seconds
	tool := func(key string) peer {
		return peer{key: key, name: key + " both ways", upName: key + " up", downName: key + " down", version: key + " v1", how: "as " + key + " comes", checks: "checks " + key}
	}
	fast, slow := tool("fast"), tool("slow")
	slow.checksDownloads = true
	secs := map[string][]float64{
		ckDisk:     {1, 1, 1},
		ckTCP:      {0.5, 0.5, 0.5},
		ckUpload:   {2, 2, 2},
		ckDownload: {1, 1, 1},
		ckLocal:    {1, 1, 1},
		ckHash:     {0.5, 0.5, 0.5},
		// fast uploads faster than the package and downloads slower;
		// slow is slower both ways.
		peerUpKey(fast): {1.6, 1.6, 1.6}, peerDownKey(fast): {1.25, 1.25, 1.25},
		peerUpKey(slow): {4, 4, 4}, peerDownKey(slow): {2, 2, 2},
	}
	tests := []struct {
		name    string
		busy    busy
		missing []string
		wants   []string
		absent  []string
	}{
		{
			name: "the package against its peers",
			busy: busy{0.5, 1.25, 0},
			wants: []string{
				"| upload: `Run.Commit` to MinIO | 500 (500) | 0.50 | 0.50 | 1.00 |",
				"| upload: fast up | 625 (625) | 0.62 | 0.62 | 0.80 | 0.50 + 1.25 + 0.00 |",
				"| upload: slow up | 250 (250) | 0.25 | 0.25 | 2.00 |",
				"| download: fast down | 800 (800) | 0.80 | 0.80 | 1.25 |",
				"| download: slow down | 500 (500) | 0.50 | 0.50 | 2.00 |",
				"fast both ways (fast v1): as fast comes; it checks fast; slow both ways (slow v1): as slow comes; it checks slow.",
				"This run: upload 0.80 of fast up, the fastest peer uploading (not met); download 1.25 of fast down, the fastest downloading (met).",
				// Every run keeps the client 0.5 and MinIO 1.25 cores busy.
				"MinIO spent 2.50 CPU-seconds on `Run.Commit`'s upload and 2.00 on the upload of fast up, the clients 1.00 and 0.80",
				"`Run.Download`'s client spent 0.50 CPU-seconds per GB, that of fast down 0.62; the SHA-256 of the same bytes alone takes 0.25 (the reference row, 0.50 s per GB on one core, where fast down took 1.25 s per GB",
				"as light as that peer's (2.19 CPU-seconds per GB), one that also hashes every byte would still need (2.19 + 0.25) ÷ 2 cores = 1.22 s per GB here.",
				"Against the peers that check what they download (slow both ways), `Run.Download` is 2.00 of the fastest.",
			},
			absent: []string{"Not measured", "Other work"},
		},
		{
			name:    "a tool missing, the machine busy",
			busy:    busy{0.5, 1, 0.5},
			missing: []string{"rclone is not installed"},
			wants:   []string{"Not measured: rclone is not installed.", "Other work on the machine took up to 0.50 of its 2 cores", "was 2.0 at the median run, 3.0 at the most."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sec := renderCheckpoint(ckptReport{
				size: size, layout: checkpointLayout(1 << 30), disk: "ext4 on /dev/x, mounted at /", measured: "Measured on X.", cores: 2,
				peers: []peer{fast, slow}, missing: tt.missing, loads: []float64{1, 3, 2},
			}, ckptSamples(secs, tt.busy))
			requireContains(t, sec.body, tt.wants...)
			for _, a := range tt.absent {
				if strings.Contains(sec.body, a) {
					t.Errorf("has %q:\n%s", a, sec.body)
				}
			}
			// Uploads, then downloads, each the package's first.
			var order []string
			for _, row := range ckptRows([]peer{fast, slow}) {
				order = append(order, row.key)
			}
			want := []string{ckDisk, ckTCP, ckHash, ckUpload, "up-fast", "up-slow", ckDownload, "down-fast", "down-slow", ckLocal}
			if !slices.Equal(order, want) {
				t.Errorf("rows = %v, want %v", order, want)
			}
			svg := string(sec.charts["bench-checkpoint.svg"])
			requireSVG(t, []byte(svg))
			requireContains(t, svg, "fast upload", "slow download", "Run.Download")
		})
	}
}

func TestPeerEnv(t *testing.T) {
	t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/machine.pem")
	t.Setenv("RCLONE_CONFIG", "/root/rclone.conf")
	t.Setenv("RTRAIN_BENCH_KEEP", "1")
	env := peerEnv("AWS_ACCESS_KEY_ID=k")
	for _, kv := range env {
		if strings.HasPrefix(kv, "AWS_CA_BUNDLE=") || strings.HasPrefix(kv, "RCLONE_CONFIG=") {
			t.Errorf("peerEnv kept %s", kv)
		}
	}
	for _, want := range []string{"AWS_ACCESS_KEY_ID=k", "RTRAIN_BENCH_KEEP=1"} {
		if !slices.Contains(env, want) {
			t.Errorf("peerEnv lacks %s", want)
		}
	}
}

// A tool that is not installed is left out with a note; minio-go, built
// in, is always there.
func TestFindPeersSkipsMissingTools(t *testing.T) {
	target := s3Target{endpoint: "http://127.0.0.1:1", accessKey: "k", secretKey: "secret-key", bucket: "b", root: "bench"}
	peers, missing, err := findPeers(peerOptions{aws: "/nonexistent/aws", rclone: "/nonexistent/rclone"}, target, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range peers {
		keys = append(keys, p.key)
	}
	if want := []string{"minio-go", "minio-go-8"}; !slices.Equal(keys, want) {
		t.Errorf("peers = %v, want %v", keys, want)
	}
	if len(missing) != 2 || !strings.Contains(missing[0], "awscli") || !strings.Contains(missing[1], "rclone") {
		t.Errorf("missing = %q, want notes for the AWS CLI and rclone", missing)
	}
}

func TestS3TargetURL(t *testing.T) {
	target := s3Target{bucket: "b", root: "bench"}
	if got, want := target.url("peer-aws"), "s3://b/bench/peer-aws/"; got != want {
		t.Errorf("url = %q, want %q", got, want)
	}
}

// Of the peers, only rclone checks what it downloads (the MD5 it stored).
func TestPeersSayWhatTheyCheck(t *testing.T) {
	target := s3Target{endpoint: "http://127.0.0.1:1", accessKey: "k", secretKey: "secret-key", bucket: "b", root: "bench"}
	rc, err := rclonePeer("/bin/true", target, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	aws, err := awsPeer("/bin/true", target, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seq, pool, err := minioGoPeers(target)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []peer{rc, aws, seq, pool} {
		if want := p.key == "rclone"; p.checksDownloads != want {
			t.Errorf("%s: checksDownloads = %v, want %v", p.key, p.checksDownloads, want)
		}
		if p.checks == "" {
			t.Errorf("%s says nothing of what it checks", p.key)
		}
	}
}
