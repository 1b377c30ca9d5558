// Package launcher starts and stops worker processes on one node.
//
// A worker runs in its own process group, dies with the launching process
// (the parent-death signal), and is stopped as a group: SIGTERM, a grace
// period, then SIGKILL, so nothing it spawned in its group outlives it. The
// shape follows Nomad's drivers: Start, Done/Exit, Stop.
package launcher
