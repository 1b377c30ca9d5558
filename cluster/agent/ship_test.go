package agent_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/agent"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/head"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/errgrpc"
	"github.com/rtrain/rtrain/internal/workdir"
	"github.com/rtrain/rtrain/rendezvous"
)

// testAgent is an agent service on loopback whose resolver answers with
// resolve, and a client of it.
type testAgent struct {
	svc     *agent.Service
	client  clusterpb.AgentClient
	dataDir string
}

func serveAgent(t *testing.T, resolve agent.PythonResolver) *testAgent {
	t.Helper()
	sec := auth.Security{Token: "s3cret"}
	opts, err := sec.ServerOptions()
	require.NoError(t, err)
	log := slog.New(slog.DiscardHandler)
	dataDir := t.TempDir()
	svc := agent.NewService(agent.New(sched.Node{ID: "n1", Addr: "127.0.0.1"}, t.TempDir(), log), dataDir, resolve, log)
	srv := grpc.NewServer(opts...)
	svc.Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	conn, err := sec.Dial(ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		assert.NoError(t, svc.Wait(ctx))
	})
	return &testAgent{svc: svc, client: clusterpb.NewAgentClient(conn), dataDir: dataDir}
}

// Only the calls that ship files may be large, and they ship them in
// chunks: any one message over cluster.MaxRequest is refused, on the head and on
// agents, where 256 MiB used to be taken by every method.
func TestServersRefuseLargeMessages(t *testing.T) {
	sec := auth.Security{Token: "s3cret"}
	addr, _ := serveHead(t, sec, nil)
	conn, err := sec.Dial(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	big := string(make([]byte, auth.MaxRequest+1))

	_, err = clusterpb.NewHeadClient(conn).Register(t.Context(), &clusterpb.RegisterRequest{Node: &clusterpb.Node{Id: big}})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "head: %v", err)

	a := serveAgent(t, nil)
	_, err = a.client.StopGroup(t.Context(), &clusterpb.StopGroupRequest{JobId: big})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "agent: %v", err)
}

// pack packs files (path → content) and stores the archive as the head
// would keep it.
func pack(t *testing.T, files map[string]string) (cluster.Workdir, *workdir.Archive) {
	t.Helper()
	root := t.TempDir()
	for p, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte(data), 0o644))
	}
	ar, err := workdir.Pack(t.Context(), root, workdir.Options{})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "workdir.tar.gz")
	require.NoError(t, os.WriteFile(path, ar.Data, 0o600))
	return cluster.Workdir{Path: path, Manifest: cluster.ManifestOf(ar)}, ar
}

// A working directory bigger than one message reaches a remote node's
// group in chunks, unpacked where its workers start.
func TestRemoteGroupGetsItsWorkingDirectory(t *testing.T) {
	// Past one message, random so that it packs as large.
	payload := make([]byte, auth.MaxRequest+cluster.ChunkSize/2)
	_, _ = rand.Read(payload)
	a := serveAgent(t, func(context.Context, string, string) (string, string, error) { return "/bin/sh", "", nil })
	wd, _ := pack(t, map[string]string{"run.sh": "wc -c < payload\n", "payload": string(payload)})
	require.Greater(t, wd.Manifest.ArchiveBytes, int64(auth.MaxRequest))
	r := head.NewRemoteAgent(sched.Node{ID: "n1"}, a.client, make(chan struct{}), slog.New(slog.DiscardHandler))
	spec := cluster.GroupSpec{
		JobID: "ship", RunName: "ship", Script: "run.sh", Grace: time.Second,
		Layout:  rendezvous.Layout{RunID: "ship", MasterAddr: "127.0.0.1", MasterPort: 1, LocalWorldSizes: []int{1}},
		Workers: []cluster.WorkerSpec{{LocalRank: 0}},
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	g, err := r.StartGroup(ctx, spec, cluster.Shipment{Workdir: wd})
	require.NoError(t, err)
	var lines []string
	var exit cluster.Event
	for e := range g.Events() {
		switch e.Kind {
		case cluster.WorkerLog:
			lines = append(lines, strings.TrimSpace(e.Line))
		case cluster.WorkerExited:
			exit = e
		}
	}
	assert.Equal(t, 0, exit.Exit.Code, "exit: %+v", exit)
	assert.Contains(t, lines, strconv.Itoa(len(payload)), "the payload's size as the worker read it")
	_, err = os.Stat(filepath.Join(a.dataDir, "jobs", "ship", "workdir"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the working directory goes with the group")
}

// bombArchive is a small gzip'ed tar of one file of size zero bytes.
func bombArchive(t *testing.T, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	require.NoError(t, err)
	tw := tar.NewWriter(gz)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: size}))
	_, err = tw.Write(make([]byte, size))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

// An agent unpacks no more than the manifest says: a small archive that
// unpacks to much more is cut off, and nothing of it stays on the node.
func TestStartGroupHoldsTheArchiveToItsManifest(t *testing.T) {
	var resolved atomic.Bool
	a := serveAgent(t, func(context.Context, string, string) (string, string, error) {
		resolved.Store(true)
		return "", "", errors.New("no python here")
	})
	bomb := bombArchive(t, 64<<20)
	require.Less(t, len(bomb), 1<<20)
	spec := []byte(`{"JobID":"bomb","Script":"zeros"}`)
	tests := []struct {
		name     string
		manifest *clusterpb.WorkdirManifest
		chunks   [][]byte
		code     codes.Code
		want     string
	}{
		{
			name:     "unpacks to more than it says",
			manifest: &clusterpb.WorkdirManifest{ArchiveBytes: int64(len(bomb)), UnpackedBytes: 1 << 20, Entries: 1},
			chunks:   [][]byte{bomb},
			code:     codes.InvalidArgument,
			want:     "workdir: archive unpacks to over 1 MiB of files, its limit",
		},
		{
			name:     "longer than it says",
			manifest: &clusterpb.WorkdirManifest{ArchiveBytes: 10, UnpackedBytes: 64 << 20, Entries: 1},
			chunks:   [][]byte{bomb},
			code:     codes.InvalidArgument,
			want:     "longer than its manifest says",
		},
		{
			name:   "no manifest",
			chunks: [][]byte{bomb},
			code:   codes.InvalidArgument,
			want:   "no working directory manifest",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := a.client.StartGroup(t.Context())
			require.NoError(t, err)
			require.NoError(t, stream.Send(&clusterpb.StartGroupRequest{Group: &clusterpb.StartGroupHeader{SpecJson: spec, Workdir: tt.manifest}}))
			for _, c := range tt.chunks {
				if err := cluster.SendArchive(bytes.NewReader(c), func(b []byte) error {
					return stream.Send(&clusterpb.StartGroupRequest{WorkdirChunk: b})
				}); err != nil {
					require.ErrorIs(t, err, io.EOF)
				}
			}
			_ = stream.CloseSend()
			_, err = stream.Recv()
			assert.Equal(t, tt.code, status.Code(err), "%v", err)
			assert.Contains(t, status.Convert(err).Message(), tt.want)
			assert.False(t, resolved.Load(), "no python was looked for")
			_, err = os.Stat(filepath.Join(a.dataDir, "jobs", "bomb", "workdir"))
			assert.ErrorIs(t, err, os.ErrNotExist, "nothing of it left")
		})
	}
}

// The head stores no more of an upload than its manifest says, and none
// of one it refuses.
func TestReceiveWorkdir(t *testing.T) {
	_, ar := pack(t, map[string]string{"train.py": "print()\n"})
	good := cluster.ManifestOf(ar)
	long := cluster.ManifestOf(ar)
	long.ArchiveBytes--
	short := cluster.ManifestOf(ar)
	short.ArchiveBytes++
	tests := []struct {
		name     string
		manifest *clusterpb.WorkdirManifest
		max      int64
		code     codes.Code // codes.OK: stored
		limit    int64      // WorkdirLimit's, when refused for its size
	}{
		{name: "as it says", manifest: good, max: 1 << 20},
		{name: "over the head's limit", manifest: good, max: ar.Size - 1, code: codes.ResourceExhausted, limit: ar.Size - 1},
		{name: "longer than it says", manifest: long, max: 1 << 20, code: codes.InvalidArgument},
		{name: "shorter than it says", manifest: short, max: 1 << 20, code: codes.InvalidArgument},
		{name: "too many entries", manifest: &clusterpb.WorkdirManifest{Entries: workdir.MaxEntries + 1}, max: 1 << 20, code: codes.InvalidArgument},
		{name: "more packed than it can take", manifest: &clusterpb.WorkdirManifest{ArchiveBytes: 1 << 30, UnpackedBytes: 1, Entries: 1}, max: 1 << 20, code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			sent := false
			recv := func() ([]byte, error) {
				if sent {
					return nil, io.EOF
				}
				sent = true
				return ar.Data, nil
			}
			wd, err := cluster.ReceiveWorkdir(dir, tt.manifest, tt.max, recv)
			assert.Equal(t, tt.code, status.Code(err), "%v", err)
			limit, ok := cluster.WorkdirLimit(err)
			assert.Equal(t, tt.limit != 0, ok, "WorkdirLimit")
			assert.Equal(t, tt.limit, limit)
			files, _ := os.ReadDir(dir)
			if tt.code != codes.OK {
				assert.Empty(t, files, "nothing stored")
				return
			}
			got, err := os.ReadFile(wd.Path)
			require.NoError(t, err)
			assert.Equal(t, ar.Data, got)
			assert.Len(t, files, 1)
		})
	}
}

// A node that cannot isolate a strict group refuses it with NOT_ISOLATED,
// and the head's error for it is ErrNotIsolated, with the node's message:
// it used to be matched by a message prefix the node never sent.
func TestStrictIsolationRefusedOverGRPC(t *testing.T) {
	a := serveAgent(t, func(context.Context, string, string) (string, string, error) { return "/bin/sh", "", nil })
	wd, _ := pack(t, map[string]string{"run.sh": "true\n"})
	r := head.NewRemoteAgent(sched.Node{ID: "n1"}, a.client, make(chan struct{}), slog.New(slog.DiscardHandler))
	spec := cluster.GroupSpec{
		JobID: "strict", RunName: "strict", Script: "run.sh", Grace: time.Second,
		Layout:  rendezvous.Layout{RunID: "strict", MasterAddr: "127.0.0.1", MasterPort: 1, LocalWorldSizes: []int{1}},
		Workers: []cluster.WorkerSpec{{LocalRank: 0}},
		// This test binary runs no reaper, so no node of it can limit pids.
		Limits: cluster.Limits{Pids: 64, Strict: true},
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := r.StartGroup(ctx, spec, cluster.Shipment{Workdir: wd})
	require.Error(t, err)
	assert.ErrorIs(t, err, cluster.ErrNotIsolated)
	assert.Equal(t, "NOT_ISOLATED", errgrpc.Reason(err))
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Regexp(t, `^node n1 cannot enforce pids limit: `, err.Error(), "the node's message, once")
}
