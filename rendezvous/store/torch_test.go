package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/rendezvous/store"
)

// jobTimeout bounds one multi-process run, so a hang fails the test.
const jobTimeout = 2 * time.Minute

// TestTorchClient drives torch 1.13's own TCPStore client against the server.
func TestTorchClient(t *testing.T) {
	py := testutil.Python(t)
	s := listen(t)

	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, filepath.Join("testdata", "client.py"), strconv.Itoa(s.Port())).CombinedOutput()
	require.NoError(t, err, "client.py:\n%s", out)
	assert.Equal(t, "ok\n", string(out))

	// The torch client prefixes keys with "/", and counts itself in "init/".
	got, err := dial(t, s).get("/left")
	require.NoError(t, err)
	assert.Equal(t, "from-python", got)
	n, err := dial(t, s).get("init/")
	require.NoError(t, err)
	assert.Equal(t, "1", n)
}

// TestTorchInitProcessGroup runs what the store is for: four gloo ranks that
// rendezvous through it with torchrun's agent-store contract, twice on one
// server as two attempts of a job.
func TestTorchInitProcessGroup(t *testing.T) {
	py := testutil.Python(t)
	s := listen(t)
	const world = 4

	for attempt := range 2 {
		t.Run(fmt.Sprintf("attempt %d", attempt), func(t *testing.T) {
			res, _, err := runJob(py, world, agentStoreEnv(s.Port(), attempt))
			require.NoError(t, err)
			for r, got := range res {
				assert.Equal(t, r, got.Rank, "rank")
				assert.Equal(t, world, got.WorldSize, "rank %d: world size", r)
				assert.Equal(t, float64(world*(world+1)/2), got.Sum, "rank %d: all_reduce sum", r)
			}
		})
	}

	keys := store.Keys(s)
	t.Logf("keys after two attempts: %q", keys)
	for attempt := range 2 {
		// TCPStore's own "/", then PrefixStore's "/worker/attempt_N/".
		prefix := fmt.Sprintf("//worker/attempt_%d/", attempt)
		assert.True(t, hasPrefix(keys, prefix), "no key starts with %s", prefix)
	}
}

func hasPrefix(keys []string, prefix string) bool {
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// BenchmarkInitProcessGroup measures, per four-rank launch, the time from
// starting the processes to the last init_process_group returning
// (start-to-init), and from the last rank's import of torch to the last
// init_process_group returning (import-to-init, the rendezvous itself):
// with this store ("agent") against plain env:// with rank 0 hosting the
// store ("rank0"), where a rank that dials before rank 0 listens loses a
// second to torch's connect retry. Run it with
//
//	go test -run '^$' -bench InitProcessGroup -benchtime 3x ./rendezvous/store/
func BenchmarkInitProcessGroup(b *testing.B) {
	py := testutil.Python(b)
	const world = 4
	modes := []struct {
		name string
		env  func(b *testing.B) []string
	}{
		{"agent", func(b *testing.B) []string {
			s, err := store.Listen(context.Background(), "127.0.0.1:0", nil)
			require.NoError(b, err)
			b.Cleanup(func() { require.NoError(b, s.Close()) })
			return agentStoreEnv(s.Port(), 0)
		}},
		{"rank0", func(b *testing.B) []string {
			return []string{"MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + strconv.Itoa(freePort(b))}
		}},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			var startToInit, importToInit time.Duration
			for i := range b.N {
				env := m.env(b)
				res, start, err := runJob(py, world, env)
				require.NoError(b, err)
				var lastImport, lastInit int64
				for _, r := range res {
					lastImport = max(lastImport, r.ImportedNS)
					lastInit = max(lastInit, r.InitializedNS)
				}
				s2i := time.Duration(lastInit - start.UnixNano())
				i2i := time.Duration(lastInit - lastImport)
				b.Logf("%s launch %d: start-to-init %v, import-to-init %v", m.name, i, s2i.Round(time.Millisecond), i2i.Round(time.Millisecond))
				startToInit += s2i
				importToInit += i2i
			}
			b.ReportMetric(float64(startToInit.Milliseconds())/float64(b.N), "start-to-init-ms/op")
			b.ReportMetric(float64(importToInit.Milliseconds())/float64(b.N), "import-to-init-ms/op")
		})
	}
}

// agentStoreEnv is torchrun's worker contract when its agent hosts the store.
func agentStoreEnv(port, attempt int) []string {
	return []string{
		"MASTER_ADDR=127.0.0.1",
		"MASTER_PORT=" + strconv.Itoa(port),
		"TORCHELASTIC_USE_AGENT_STORE=True",
		"TORCHELASTIC_RESTART_COUNT=" + strconv.Itoa(attempt),
	}
}

// freePort is a port nothing listens on now, for rank 0 to bind.
func freePort(tb testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// rankResult is what testdata/worker.py prints.
type rankResult struct {
	Rank          int     `json:"rank"`
	WorldSize     int     `json:"world_size"`
	Sum           float64 `json:"sum"`
	ImportedNS    int64   `json:"imported_ns"`
	InitializedNS int64   `json:"initialized_ns"`
}

// runJob starts world ranks of testdata/worker.py together, with env on top
// of this process's environment, and returns their results by rank and when
// the first was started. One failing rank stops the others; all are reaped
// before runJob returns.
func runJob(py string, world int, env []string) ([]rankResult, time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()

	base := []string{"OMP_NUM_THREADS=1", "WORLD_SIZE=" + strconv.Itoa(world)}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "RANK", name == "LOCAL_RANK", name == "WORLD_SIZE",
			strings.HasPrefix(name, "MASTER_"), strings.HasPrefix(name, "TORCHELASTIC_"):
			continue
		}
		base = append(base, kv)
	}
	base = append(base, env...)

	outs := make([]bytes.Buffer, world)
	var g errgroup.Group
	start := time.Now()
	for r := range world {
		cmd := exec.CommandContext(ctx, py, filepath.Join("testdata", "worker.py"))
		cmd.Env = append(base, "RANK="+strconv.Itoa(r), "LOCAL_RANK="+strconv.Itoa(r))
		cmd.Stdout = &outs[r]
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			cancel()
			_ = g.Wait()
			return nil, start, fmt.Errorf("start rank %d: %w", r, err)
		}
		g.Go(func() error {
			if err := cmd.Wait(); err != nil {
				cancel()
				return fmt.Errorf("rank %d: %w; stderr:\n%s", r, err, tail(stderr.String(), 2000))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, start, err
	}
	res := make([]rankResult, world)
	for r := range res {
		if err := json.Unmarshal(outs[r].Bytes(), &res[r]); err != nil {
			return nil, start, fmt.Errorf("rank %d printed %q: %w", r, outs[r].String(), err)
		}
	}
	return res, start, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
