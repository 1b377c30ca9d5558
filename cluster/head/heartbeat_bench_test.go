package head

import (
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/sched"
)

// BenchmarkHeartbeat is what one heartbeat costs the head with 10,000
// nodes registered, the requirement being 10,000 agents at 1 Hz on 2
// cores. "method" calls Registry.Heartbeat directly: the head's own
// work. "grpc" goes over loopback through the token check, 100 client
// connections shared by the callers, as rtrain-bench's heartbeat section
// does; its CPU is both sides', client and server, since both run here.
// cpu-µs/op is the process's CPU time per heartbeat, and cores@10k/s what
// 10,000 heartbeats a second would keep busy at that cost.
func BenchmarkHeartbeat(b *testing.B) {
	const nodes = 10_000
	sec := auth.Security{Token: "bench"}
	hs := NewRegistry(sched.New(), sec, Options{}, slog.New(slog.DiscardHandler))
	b.Cleanup(hs.Close)
	ids := make([]string, nodes)
	for i := range ids {
		n := sched.Node{ID: fmt.Sprintf("n%05d", i), Total: sched.Resources{CPU: 64, GPU: 8, MemoryBytes: 64 << 30}}
		n.Addr, n.AgentAddr = "127.0.0.1", "127.0.0.1:1"
		rep, err := hs.Register(b.Context(), &clusterpb.RegisterRequest{Node: cluster.NodeToProto(n)})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = rep.NodeId
	}

	b.Run("method", func(b *testing.B) {
		benchBeats(b, ids, func(i int) error {
			_, err := hs.Heartbeat(b.Context(), &clusterpb.HeartbeatRequest{NodeId: ids[i]})
			return err
		})
	})

	b.Run("grpc", func(b *testing.B) {
		opts, err := sec.ServerOptions()
		if err != nil {
			b.Fatal(err)
		}
		srv := grpc.NewServer(opts...)
		hs.RegisterWithoutJobs(srv)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		served := make(chan struct{})
		go func() { defer close(served); _ = srv.Serve(ln) }()
		b.Cleanup(func() { srv.Stop(); <-served })
		clients := make([]clusterpb.HeadClient, 100)
		for i := range clients {
			conn, err := sec.Dial(ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = conn.Close() })
			clients[i] = clusterpb.NewHeadClient(conn)
		}
		benchBeats(b, ids, func(i int) error {
			_, err := clients[i%len(clients)].Heartbeat(b.Context(), &clusterpb.HeartbeatRequest{NodeId: ids[i]})
			return err
		})
	})
}

// benchBeats runs beat for b.N heartbeats from many goroutines, the
// nodes taking turns, and reports the CPU time they took.
func benchBeats(b *testing.B, ids []string, beat func(node int) error) {
	var next atomic.Int64
	b.SetParallelism(64) // many agents' calls in flight, as at the head
	cpu0 := benchCPUTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := beat(int(next.Add(1)) % len(ids)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	perOp := (benchCPUTime() - cpu0) / time.Duration(b.N)
	b.ReportMetric(float64(perOp)/1e3, "cpu-µs/op")
	b.ReportMetric(perOp.Seconds()*10_000, "cores@10k/s")
}

// benchCPUTime is the CPU time this process has used, user and system.
func benchCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
