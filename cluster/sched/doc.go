// Package sched is the placement-group (gang) scheduler: the cluster's
// nodes and what they offer (Node, GPU, Resources with custom resources),
// requests for bundles (Request, Strategy), and Scheduler, which places a
// request all or nothing over the nodes and queues it first-in first-out
// until it fits. It does no I/O: the head's membership service and the
// embedded node feed it nodes, and the job runner reserves and releases.
package sched
