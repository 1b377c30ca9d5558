package rendezvous

import (
	"context"
	"fmt"
	"net"
)

// FreePort asks the kernel for a TCP port that is free on host right now.
// The port is released before returning, so rank 0 can bind it; a new one is
// chosen for every attempt, which is what keeps two jobs on one machine (or
// one job's restarts) from colliding on a fixed 29500.
func FreePort(ctx context.Context, host string) (int, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("rendezvous: find a free port on %s: %w", host, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("rendezvous: release port %d: %w", port, err)
	}
	return port, nil
}
