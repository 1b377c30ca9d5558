// Package agent is a node agent: it runs a job's worker group on its node
// (processes under the reaper, cgroup isolation, the rendezvous store, the
// rank-0 checkpoint staging), serves that over gRPC to the head (Service),
// and joins a head as a daemon that heartbeats and renews its workers'
// lease (Start). Local is the embedded cluster of `rtrain fit` without an
// address: a scheduler and one agent in-process.
package agent
