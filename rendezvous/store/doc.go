// Package store is a c10d TCPStore server, wire-compatible with the client in
// PyTorch 1.13, that the orchestrator hosts for the workers of a job.
//
// Why: under plain env:// rendezvous rank 0 starts the TCPStore server in its
// own process, and every other rank connects to it. Workers start together,
// so a rank usually dials before rank 0 has imported torch and bound the
// port; torch 1.13's client then gets ECONNREFUSED and sleeps a whole second
// before it retries. A two-to-four worker launch loses about a second to
// that. torchrun avoids it by hosting the store in its agent, and so do we:
// with TORCHELASTIC_USE_AGENT_STORE=True in a worker's environment, torch's
// env:// handler (_create_c10d_store in torch/distributed/rendezvous.py) makes
// every rank, rank 0 included, a client of MASTER_ADDR:MASTER_PORT and
// prefixes its keys with "/worker/attempt_{TORCHELASTIC_RESTART_COUNT}". A
// Server from Listen is already accepting before the first worker starts, so
// no rank ever sees a refused connection, and one Server can serve every
// attempt of a job because the prefix keeps the attempts apart.
//
// The protocol (torch/csrc/distributed/c10d/TCPStore.cpp in 1.13) is
// request/response over one TCP connection per client, with no handshake:
// a request is one query-type byte followed by its arguments; strings and
// byte vectors are a uint64 length then the bytes; integers are in the
// host's byte order (torch sends its in-memory representation). Each client
// opens a second, idle connection that carries WATCH_KEY callbacks. The
// server's semantics, quirks included, are documented on the handlers in
// keyspace.go.
package store
