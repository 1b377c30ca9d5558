// Package head is the cluster's head: the membership registry that
// registers node agents, follows their heartbeats, declares silent ones
// dead once their workers' lease has run out, and hands the scheduler and
// the agents (RemoteAgent, the head's client of an agent's service) to the
// jobs it runs.
package head
