package agent_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/agent"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
	"github.com/rtrain/rtrain/cluster/head"
	"github.com/rtrain/rtrain/cluster/sched"
)

// serveHead serves a head's membership service with sec (and cert, when
// not nil) on loopback until the test ends.
func serveHead(t *testing.T, sec auth.Security, cert *tls.Certificate) (string, *head.Registry) {
	t.Helper()
	sec.Certificate = cert
	opts, err := sec.ServerOptions()
	require.NoError(t, err)
	hs := head.NewRegistry(sched.New(), sec, head.Options{}, slog.New(slog.DiscardHandler))
	srv := grpc.NewServer(opts...)
	hs.RegisterWithoutJobs(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); hs.Close() })
	return ln.Addr().String(), hs
}

// ownCAHead serves a head with a CA made in dir, as `rtrain start --head`
// does without TLS files, and returns its address and join token.
func ownCAHead(t *testing.T, dir string) (addr, join string, hs *head.Registry) {
	t.Helper()
	ca, err := auth.LoadOrCreateCA(dir)
	require.NoError(t, err)
	cert, err := ca.Issue(auth.LocalHosts())
	require.NoError(t, err)
	join = auth.JoinToken("s3cret", ca.Fingerprint())
	addr, hs = serveHead(t, auth.Security{Token: join}, &cert)
	return addr, join, hs
}

// An agent that joins with the join token serves TLS of its own, and the
// head reaches it by the fingerprint it registered.
func TestAgentJoinsOverTheHeadsCA(t *testing.T) {
	addr, join, hs := ownCAHead(t, t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	ra, err := agent.Start(ctx, agent.Config{HeadAddr: addr, Security: auth.Security{Token: join},
		Node: sched.Node{ID: "n1", Addr: "127.0.0.1", Total: sched.Resources{CPU: 1}}, DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); <-ra.Done() })

	agent, ok := hs.Agent(ra.NodeID)
	require.True(t, ok)
	rctx, rcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer rcancel()
	_, err = agent.Rendezvous(rctx, cluster.RendezvousRequest{JobID: "j1", TorchVersion: "1.13.0"})
	require.NoError(t, err, "the head calls the agent over TLS it verified")

	// A node that registers without a certificate (a bare secret and
	// plain TCP) would never be reachable: refused at once.
	_, err = hs.Register(t.Context(), &clusterpb.RegisterRequest{Node: &clusterpb.Node{Id: "n2", Addr: "127.0.0.1", AgentAddr: "127.0.0.1:1", Total: &clusterpb.Resources{Cpu: 1}}})
	assert.Error(t, err)
}
