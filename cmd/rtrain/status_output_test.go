package main

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/trainer"
)

// `rtrain status` and `rtrain jobs`, as tables and as JSON, print what
// they printed when they read the proto: testdata/status_output.golden was
// made by that code from the same cluster.
func TestStatusAndJobsOutputIsUnchanged(t *testing.T) {
	// The tables print local times; the golden file is in UTC.
	local := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = local })
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	custom := func(s string) sched.Custom {
		c, err := sched.ParseCustom(s)
		require.NoError(t, err)
		return c
	}
	st := trainer.ClusterStatus{Version: "1.2.3", HeartbeatTimeout: 5 * time.Second,
		Nodes: []trainer.NodeStatus{
			{Node: sched.Node{ID: "n1", Addr: "10.0.0.1", Total: sched.Resources{CPU: 8, GPU: 4, MemoryBytes: 16 << 30, Custom: custom("licence=2,disk=1")}},
				Free: sched.Resources{CPU: 6.5, GPU: 2, MemoryBytes: 8 << 30, Custom: custom("licence=0.5")}, FreeGPUs: []int{2, 3},
				State: trainer.NodeAlive, HeartbeatAge: 400 * time.Millisecond},
			{Node: sched.Node{ID: "n2", Addr: "10.0.0.2", Total: sched.Resources{CPU: 4, MemoryBytes: 8 << 30}},
				Free: sched.Resources{CPU: 4, MemoryBytes: 8 << 30}, State: trainer.NodeDead, HeartbeatAge: 12345 * time.Millisecond},
		},
		Jobs: []trainer.JobSummary{
			{ID: "j1", Name: "train", State: trainer.StateRunning, Message: "2 workers on 1 node", Workers: 2, Submitted: t0, Attempts: 2},
			{ID: "j2", Name: "queued", State: trainer.StatePending, Message: "waiting for resources: x", Workers: 8,
				Submitted: t0.Add(1500 * time.Millisecond), Queued: true, Reason: "x"},
		}}
	var b bytes.Buffer
	require.NoError(t, writeJSON(&b, statusJSON(st)))
	require.NoError(t, writeJSON(&b, jobsJSON(st.Jobs)))
	printStatus(&b, "head:7000", st)
	want, err := os.ReadFile("testdata/status_output.golden")
	require.NoError(t, err)
	assert.Equal(t, string(want), b.String())
}
