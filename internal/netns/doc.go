// Package netns builds real multi-host networks on one Linux machine for
// tests: New makes a bridge and one network namespace per host, each
// joined to the bridge by a veth pair, so that processes started with
// Host.Command talk to each other over real TCP/IP, and a host can be cut
// off (Host.LinkDown) to test the loss of a node.
//
// It needs root and iproute2's ip. Without them New skips the test, except
// when the CI environment variable is set: there it fails, so nothing real
// is silently skipped in CI.
//
// # Layout
//
// Each Net claims a subnet 10.X.Y.0/24 by creating its bridge rtbrXXYY (X
// and Y in hex) in the root namespace; creating a link is atomic, so test
// binaries running at once never share a subnet. Host i is the namespace
// rtrain-XXYY-i, with interface eth0 (Host.Iface) at 10.X.Y.(i+1)/24 and
// loopback up; its bridge side is rtvXXYY-i. The bridge has no address,
// hands no bridged traffic to iptables, and the namespaces have no default
// route: traffic stays between the namespaces of a Net.
//
// # Everything runs inside namespaces
//
// The root namespace has no route to the subnet, on purpose: on our
// machines a connection from the root namespace to a namespace address is
// sent out of the machine instead of reaching the namespace. So every
// process of a multi-host test, servers and clients alike, must run inside
// a host, started with Host.Command. A test that needs a helper program
// re-runs its own test binary as that program (a TestMain that plays a role
// named in the environment, as this package's own tests do), which needs
// nothing installed.
//
// # Names
//
// Host.Name is the namespace name. Every namespace of a Net gets an
// /etc/hosts of its own (ip netns exec mounts /etc/netns/NAME/hosts over
// /etc/hosts) that maps each host's name to its address, so hosts can
// reach each other by name. The system host name, though, is not
// per-namespace: gethostname returns the machine's name in every host, and
// it does not resolve to a host's address there. Gloo (torch.distributed's
// CPU backend) finds its own address by resolving the host name unless told
// which interface to use, so a test running PyTorch workers in a Net must
// set GLOO_SOCKET_IFNAME=Host.Iface() (eth0) in their environment; NCCL's
// counterpart is NCCL_SOCKET_IFNAME.
//
// # Cleanup
//
// New registers Net.Close with t.Cleanup, so it runs even when the test
// fails: it kills every process still in a namespace of the Net (ip netns
// pids), then deletes the veths, the namespaces, their /etc/netns entries
// and the bridge. Close is idempotent and may be called earlier.
package netns
