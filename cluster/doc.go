// Package cluster is what the head, the node agents and the job runner
// share: the spec of a job's worker group on one node (GroupSpec), the
// events a group reports (Event), the limits it runs under, the interfaces
// a job runs against (NodeAgent, GroupRunner), and the file streams that
// carry working directories and checkpoints.
//
// The parts are packages of their own: sched (the placement-group
// scheduler, no I/O), discover (this machine as a node), auth (the token,
// versions and TLS every call carries), agent (runs the
// groups; Local is the embedded one-machine cluster), head (the node
// registry and the daemon), etcdstore (the head's tables in etcd, and the
// election of the active head among several) and clusterpb (the generated
// gRPC code).
package cluster
