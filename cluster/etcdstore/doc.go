// Package etcdstore keeps a cluster head's tables in etcd and elects the
// active head, for `rtrain start --head --store etcd://HOST:2379[,...]`:
// every head given the same store campaigns; one leads, the others are
// standbys that take over when it goes.
//
// # Election
//
// Store.Campaign grants the candidate an etcd lease of Config.TTL, keeps
// it alive with a concurrency.Session and runs a concurrency.Election
// under PREFIX/election/. It returns a Leadership once the candidate
// leads. A standby's Campaign simply blocks; its key is already in the
// election, so Store.Members lists it, in the order the standbys would
// take over.
//
// A standby takes over about TTL after a leader died (its lease expires on
// the server), at once after a leader resigned. Store.Close does not
// resign: it is the same as the process dying, and its leases run out.
//
// # Fencing
//
// A Leadership is lost as soon as its holder cannot be sure it still
// leads: Lost is closed when the lease is gone (expired, revoked, or the
// Store closed) and also when no renewal has come back for four fifths of
// the TTL, before the lease can have expired on the server as long as a
// renewal's round trip takes under a fifth of the TTL. etcd's client
// itself notices up to a second late, after a standby may already lead. A
// head must stop acting as the leader when Lost is closed, and campaign
// again if it wants to lead; the Leadership is done with.
//
// Whatever a head's own view, Leadership.Put and Delete are one etcd Txn
// guarded by the create revision of the leader's election key: a head that
// has been deposed cannot write, it gets ErrNotLeader. Leadership.Term is
// that revision, which grows with every new leader, for fencing what lies
// outside etcd.
//
// # etcd unavailable
//
// Requests wait for etcd rather than fail: the client waits for a
// connection, and Put, Delete and Campaign retry what etcd refused as
// unavailable until their ctx ends (Put and Delete also stop when the
// Leadership is lost). etcd keeps leases across a restart and gives each
// a full TTL again, so a leader survives an outage as long as a renewal
// comes back within four fifths of the TTL of the last one. The client
// renews a third of the TTL after the last renewal came back, on a
// half-second tick; so the outage and the reconnection after it (gRPC
// retries within a second here) are survived for certain if they take
// under 4/5 - 1/3 of the TTL less half a second (1.8s of the default 5s;
// a small etcd restarts in about a second), and never past 4/5 of it.
// A longer outage loses the Leadership; the head campaigns again (a lost
// candidate's lease is revoked once etcd is back, so nobody waits for it
// to expire), and wins again unless a standby got there first. What etcd
// committed survives either way.
//
// # Keys
//
// Under Config.Prefix ("/rtrain/" by default): election/<lease> holds a
// candidate's {"id","addr"} as JSON, tables/<table>/<key> a table's rows.
package etcdstore
