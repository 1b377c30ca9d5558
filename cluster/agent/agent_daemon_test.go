package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/agent"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/rendezvous"
)

// syncBuffer is a log destination the test reads while the agent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// nodesOf is the node attribute of each record with message msg.
func (b *syncBuffer) nodesOf(t *testing.T, msg string) []string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var nodes []string
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var r map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		if r["msg"] == msg {
			node, _ := r["node"].(string)
			nodes = append(nodes, node)
		}
	}
	return nodes
}

// Two agents that ask for one name (hosts cloned from one image) get vm
// and vm-2 from the head, and each goes by the one it was given: in its
// log, in its errors, and in the warning that it cannot isolate its
// workers. The second used to say vm in all of them.
func TestAgentsOfOneNameGoByTheNamesTheHeadGave(t *testing.T) {
	addr, join, hs := ownCAHead(t, t.TempDir())
	resolve := func(_ context.Context, python, _ string) (string, string, error) {
		if python == "missing" {
			return "", "", errors.New("no python named missing")
		}
		return "/bin/sh", "", nil
	}
	var ids []string
	logs := map[string]*syncBuffer{}
	for range 2 {
		out := &syncBuffer{}
		log := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
		ctx, cancel := context.WithCancel(t.Context())
		ra, err := agent.Start(ctx, agent.Config{HeadAddr: addr, Security: auth.Security{Token: join},
			Node:    sched.Node{ID: "vm", Addr: "127.0.0.1", Total: sched.Resources{CPU: 1}},
			DataDir: t.TempDir(), ShimDir: t.TempDir(), Resolve: resolve}, log)
		require.NoError(t, err)
		t.Cleanup(func() { cancel(); <-ra.Done() })
		ids = append(ids, ra.NodeID)
		logs[ra.NodeID] = out
	}
	require.Equal(t, []string{"vm", "vm-2"}, ids)

	wd, _ := pack(t, map[string]string{"run.sh": "echo hello\n"})
	for i, id := range ids {
		agent, ok := hs.Agent(id)
		require.True(t, ok, id)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()

		_, err := agent.Rendezvous(ctx, cluster.RendezvousRequest{JobID: "names", TorchVersion: "1.13.0"})
		require.NoError(t, err)
		assert.Equal(t, []string{id}, logs[id].nodesOf(t, "store listening"), "the node in its agent's log")

		spec := cluster.GroupSpec{
			JobID: "names", RunName: "names", Script: "run.sh", Grace: time.Second,
			Layout:   rendezvous.Layout{RunID: "names", MasterAddr: "127.0.0.1", MasterPort: 1, LocalWorldSizes: []int{1, 1}},
			NodeRank: i, Workers: []cluster.WorkerSpec{{LocalRank: 0}},
			// This test binary runs no reaper, so the node can enforce
			// no limit: a strict group is refused with the warning a
			// lenient one starts with.
			Limits: cluster.Limits{Pids: 100, Strict: true},
		}
		_, err = agent.StartGroup(ctx, spec, cluster.Shipment{Workdir: wd, Python: "missing"})
		require.Error(t, err)
		assert.Equal(t, "node "+id+": no python named missing", err.Error(), "the node in its agent's error, once")

		_, err = agent.StartGroup(ctx, spec, cluster.Shipment{Workdir: wd})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "node "+id+" cannot enforce pids limit", "the node in its warning")
	}
}
