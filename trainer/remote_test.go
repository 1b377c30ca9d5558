package trainer_test

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/agent"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/head"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/internal/workdir"
	"github.com/rtrain/rtrain/trainer"
)

// remoteHead is a head on loopback with no nodes, and a client of it.
func remoteHead(t *testing.T, cfg head.Config) (*head.Daemon, *trainer.Client) {
	t.Helper()
	cfg.Addr, cfg.Security = "127.0.0.1", auth.Security{Token: "t"}
	cfg.ResultsDir = t.TempDir()
	h, err := head.Start(t.Context(), cfg, nil)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	c, err := trainer.Dial(h.Addr().String(), cfg.Security)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return h, c
}

// projectDir is a working directory with train.py and data.bin, size
// random bytes that do not compress.
func projectDir(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "train.py"), []byte("print('hi')\n"), 0o644))
	f, err := os.Create(filepath.Join(dir, "data.bin"))
	require.NoError(t, err)
	_, err = io.CopyN(f, rand.Reader, size)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return dir
}

// A working directory over the head's limit, within the client's, is one
// line that says what to do: it used to be gRPC's "trying to send message
// larger than max (283202995 vs. 268435456)".
func TestSubmitOverTheHeadsLimitSaysWhatToDo(t *testing.T) {
	state := t.TempDir()
	_, c := remoteHead(t, head.Config{MaxWorkingDir: 1 << 20, StateDir: state})
	dir := projectDir(t, 2<<20)
	_, err := c.Submit(t.Context(), trainer.Config{Script: filepath.Join(dir, "train.py"), WorkingDir: dir, Workers: 1, WorkingDirLimit: 10 << 20})
	require.Error(t, err)
	assert.Equal(t, "workdir: "+dir+" is 2 MiB, over the 1 MiB the head at "+c.Addr()+" accepts (largest: data.bin 2 MiB, train.py 12 B); add them to .rtrainignore, or start the head with a larger --max-working-dir", err.Error())
	assert.ErrorIs(t, err, trainer.ErrInvalidConfig)
	assert.ErrorIs(t, err, workdir.ErrTooLarge)
	uploads, err := os.ReadDir(filepath.Join(state, "uploads"))
	require.NoError(t, err)
	assert.Empty(t, uploads, "the head kept nothing of it")
}

// A working directory larger than any message the head takes arrives in
// chunks; the head keeps it while its job lives, and no longer.
func TestSubmitShipsAWorkingDirectoryInChunks(t *testing.T) {
	state := t.TempDir()
	h, c := remoteHead(t, head.Config{StateDir: state})
	// A node another job holds: the job waits for it, however fast the
	// machine, where with no node at all it could never be placed and
	// would end at once.
	sc := h.Nodes().Scheduler()
	require.NoError(t, sc.AddNode(sched.Node{ID: "n1", Addr: "127.0.0.1", Total: sched.Resources{CPU: 1}}))
	_, err := sc.Reserve(t.Context(), "holder", sched.Request{Count: 1, Bundle: sched.Resources{CPU: 1}})
	require.NoError(t, err)
	dir := projectDir(t, 6<<20)
	sub, err := c.Submit(t.Context(), trainer.Config{Script: filepath.Join(dir, "train.py"), WorkingDir: dir, Workers: 1, CPUsPerWorker: 1})
	require.NoError(t, err)
	assert.Equal(t, int64(6<<20+len("print('hi')\n")), sub.Bytes)

	uploads := filepath.Join(state, "uploads")
	files, err := os.ReadDir(uploads)
	require.NoError(t, err)
	require.Len(t, files, 1, "the job's working directory, kept for its nodes")
	fi, err := files[0].Info()
	require.NoError(t, err)
	assert.Greater(t, fi.Size(), int64(6<<20), "the archive of incompressible data")

	// The job waits for the node; stopped, it ends, and its working
	// directory goes with it.
	require.NoError(t, c.Stop(t.Context(), sub.JobID))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, _ := c.Attach(ctx, sub.JobID, true, nil)
	require.NotNil(t, res)
	assert.True(t, res.State.Done(), "state %s", res.State)
	files, err = os.ReadDir(uploads)
	require.NoError(t, err)
	assert.Empty(t, files, "nothing kept after the job")
}

// Two agents that ask for one name (hosts cloned from one image) are two
// nodes to a job: the head names them vm and vm-2, and each rank's start,
// lines and exit name the node it ran on. Both used to say vm, so `rtrain
// fit` prefixed both nodes' lines with [rank N vm].
func TestAgentsOfOneNameAreTwoNodesToTheJob(t *testing.T) {
	py := testutil.Python(t)
	h, c := remoteHead(t, head.Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ov := discover.NoOverrides
	ov.NumCPUs, ov.NumGPUs = 1, 0
	var ids []string
	for range 2 {
		actx, stop := context.WithCancel(context.Background())
		ra, err := agent.StartNode(actx, agent.NodeConfig{Resolve: trainer.ResolvePython, HeadAddr: h.Addr().String(), Security: auth.Security{Token: "t"},
			NodeName: "vm", NodeIP: "127.0.0.1", DataDir: t.TempDir(), Overrides: ov}, nil)
		if err != nil {
			stop()
			require.NoError(t, err)
		}
		t.Cleanup(func() { stop(); <-ra.Done() })
		ids = append(ids, ra.NodeID)
	}
	require.Equal(t, []string{"vm", "vm-2"}, ids)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "train.py"), []byte("import os\nprint('rank', os.environ['RANK'])\n"), 0o644))
	marker := testutil.Marker(t)
	sub, err := c.Submit(ctx, trainer.Config{Script: filepath.Join(dir, "train.py"), WorkingDir: dir, Workers: 2, CPUsPerWorker: 1,
		Python: py, Env: []string{marker}})
	require.NoError(t, err)
	t.Cleanup(func() { testutil.NoProcesses(t, marker, 10*time.Second) })
	started, logged := map[int]string{}, map[int]string{}
	res, err := c.Attach(ctx, sub.JobID, true, func(e trainer.Event) {
		switch e.Type {
		case trainer.EventWorkerStarted:
			started[e.Rank] = e.Node
		case trainer.EventLog:
			assert.Equal(t, "rank "+strconv.Itoa(e.Rank), e.Line)
			logged[e.Rank] = e.Node
		}
	})
	require.NoError(t, err)
	require.Equal(t, trainer.StateSucceeded, res.State)
	assert.ElementsMatch(t, ids, []string{started[0], started[1]}, "each node started one rank")
	assert.Equal(t, started, logged, "each rank's lines name its node")
	require.Len(t, res.Workers, 2)
	for _, w := range res.Workers {
		assert.Equal(t, started[w.Rank], w.Node, "rank %d's exit", w.Rank)
	}
}
