// Package etcdserver runs a real etcd server (Debian's etcd-server,
// /usr/bin/etcd) for the tests, through internal/testutil: the head's
// etcd store and election are checked against the server users run, not
// a fake.
//
// A Server is one single-member cluster with its data in a directory the
// caller owns. It listens on 127.0.0.1 by default, on free ports; a
// multi-host test sets Options.Host to a network namespace's address and
// Options.Command to that host's netns.Host.Command, so that etcd runs
// inside the namespace (the root namespace cannot reach it there: see
// internal/netns).
//
// Faults are the real ones: Kill is SIGKILL, Stop is SIGTERM, and Restart
// starts etcd again on the same ports and data directory, as an etcd that
// crashed and came back. Start retries with fresh ports when another
// process takes one between the pick and etcd's bind; Restart cannot, and
// reports the bind error instead.
package etcdserver
