// Package cluster is the head and the node agent.
//
// The head keeps the nodes and their free resources and reserves placement
// groups all-or-nothing; the agent runs a job's worker group on its node and
// reports what happens to it. `rtrain fit` with no address runs one head and
// one agent in-process (NewLocal): the same code a multi-node cluster runs,
// without the network between them.
//
// Placement itself is a pure function (Place) of a snapshot of the nodes and
// a request, so it is tested without any server.
package cluster
