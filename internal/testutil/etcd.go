package testutil

import (
	"context"
	"errors"
	"testing"

	"github.com/rtrain/rtrain/internal/etcdserver"
)

// Etcd starts a real single-member etcd (Debian's etcd-server) on free
// ports and waits until it serves clients; it is stopped when t ends. An
// empty opts.Dir means a fresh t.TempDir(); opts.Host and opts.Command put
// it in a network namespace (see etcdserver.Options). Without etcd the
// test is skipped, or fails under CI.
func Etcd(t testing.TB, opts etcdserver.Options) *etcdserver.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping a real etcd server in -short mode")
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	srv, err := etcdserver.Start(context.Background(), opts)
	if errors.Is(err, etcdserver.ErrNoBinary) {
		missing(t, "the etcd server (apt-get install etcd-server)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}
