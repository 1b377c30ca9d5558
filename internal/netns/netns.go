package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MaxHosts is the most hosts a Net holds: they take addresses .1 to .253
// of its /24.
const MaxHosts = 253

// Iface is the interface inside every host's namespace that carries its
// address.
const Iface = "eth0"

// etcNetns is where ip netns exec finds per-namespace /etc files.
const etcNetns = "/etc/netns"

// setupTimeout bounds each ip command of New and Close.
const setupTimeout = 30 * time.Second

// killWait is how long Close waits for killed processes to leave a
// namespace.
const killWait = 10 * time.Second

// Net is a bridge with hosts on it, each a network namespace. Create one
// with New.
type Net struct {
	bridge string
	prefix netip.Prefix
	hosts  []*Host

	mu     sync.Mutex
	closed bool
	err    error
}

// Host is one network namespace of a Net.
type Host struct {
	ns   string // namespace name, also the host name
	veth string // the bridge side of the host's veth pair
	addr netip.Addr
}

// New builds a Net of hosts namespaces for t and registers its Close with
// t.Cleanup. It skips t when this process is not root or ip is missing,
// and fails it instead when the CI environment variable is set.
func New(t testing.TB, hosts int) *Net {
	t.Helper()
	if hosts < 1 || hosts > MaxHosts {
		t.Fatalf("netns: %d hosts, want 1 to %d", hosts, MaxHosts)
	}
	if os.Geteuid() != 0 {
		missing(t, "root (to create network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing(t, "iproute2's ip (scripts/install-deps.sh test installs it)")
	}

	n, err := claim()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("netns cleanup: %v", err)
		}
	})
	for i := range hosts {
		n.hosts = append(n.hosts, n.newHost(i))
	}
	if err := n.setup(); err != nil {
		if errors.Is(err, syscall.EPERM) {
			missing(t, "permission to create network namespaces ("+err.Error()+")")
		}
		t.Fatal(err)
	}
	return n
}

// missing skips t, or fails it under CI.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("netns: %s is required in CI", what)
	}
	t.Skipf("skipping: netns needs %s", what)
}

// claim picks a free subnet and creates its bridge, which reserves it
// against every other Net on the machine.
func claim() (*Net, error) {
	used, err := usedPrefixes()
	if err != nil {
		return nil, err
	}
	var last error
	for range 20 {
		x, y := 100+rand.IntN(155), rand.IntN(256)
		prefix := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(x), byte(y), 0}), 24)
		if overlaps(prefix, used) {
			continue
		}
		id := fmt.Sprintf("%02x%02x", x, y)
		if leftovers(id) {
			continue
		}
		n := &Net{bridge: "rtbr" + id, prefix: prefix}
		// No bridged traffic to iptables: a FORWARD policy of DROP (as
		// Docker sets) would otherwise drop it.
		_, err := ip("link", "add", n.bridge, "type", "bridge",
			"nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0")
		if err == nil {
			return n, nil
		}
		last = err
		if errors.Is(err, syscall.EPERM) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("netns: no free subnet after 20 tries: %w", last)
}

// usedPrefixes lists the IPv4 subnets of the root namespace's addresses.
func usedPrefixes() ([]netip.Prefix, error) {
	out, err := ip("-o", "-4", "addr", "show")
	if err != nil {
		return nil, err
	}
	var used []netip.Prefix
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				if p, err := netip.ParsePrefix(f[i+1]); err == nil {
					used = append(used, p.Masked())
				}
			}
		}
	}
	return used, nil
}

func overlaps(p netip.Prefix, used []netip.Prefix) bool {
	for _, u := range used {
		if u.Overlaps(p) {
			return true
		}
	}
	return false
}

// leftovers reports whether a namespace of a Net with this id exists, left
// by a test binary that was killed before its cleanup.
func leftovers(id string) bool {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "rtrain-"+id+"-") {
			return true
		}
	}
	return false
}

func (n *Net) newHost(i int) *Host {
	id := strings.TrimPrefix(n.bridge, "rtbr")
	a := n.prefix.Addr().As4()
	a[3] = byte(i + 1)
	return &Host{
		ns:   "rtrain-" + id + "-" + strconv.Itoa(i),
		veth: "rtv" + id + "-" + strconv.Itoa(i),
		addr: netip.AddrFrom4(a),
	}
}

// setup brings the bridge up and makes the hosts.
func (n *Net) setup() error {
	disableIPv6(n.bridge)
	if _, err := ip("link", "set", n.bridge, "up"); err != nil {
		return err
	}
	var hosts bytes.Buffer
	hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, h := range n.hosts {
		fmt.Fprintf(&hosts, "%s\t%s\n", h.addr, h.ns)
	}
	for _, h := range n.hosts {
		if err := h.setup(n, hosts.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

func (h *Host) setup(n *Net, hosts []byte) error {
	dir := filepath.Join(etcNetns, h.ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), hosts, 0o644); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	steps := [][]string{
		{"netns", "add", h.ns},
		{"link", "add", h.veth, "type", "veth", "peer", "name", Iface, "netns", h.ns},
		{"link", "set", h.veth, "master", n.bridge},
		{"link", "set", h.veth, "up"},
		{"-n", h.ns, "link", "set", "lo", "up"},
		{"-n", h.ns, "addr", "add", netip.PrefixFrom(h.addr, n.prefix.Bits()).String(), "dev", Iface},
		{"-n", h.ns, "link", "set", Iface, "up"},
	}
	for i, s := range steps {
		if _, err := ip(s...); err != nil {
			return err
		}
		if i == 1 {
			disableIPv6(h.veth)
		}
	}
	return nil
}

// disableIPv6 keeps a root-namespace link from getting a link-local
// address and sending router solicitations; best effort.
func disableIPv6(link string) {
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+link+"/disable_ipv6", []byte("1\n"), 0o644)
}

// Hosts returns the hosts, in order: host i has address 10.X.Y.(i+1).
func (n *Net) Hosts() []*Host {
	return append([]*Host(nil), n.hosts...)
}

// Bridge is the name of the bridge in the root namespace.
func (n *Net) Bridge() string { return n.bridge }

// Prefix is the Net's subnet, 10.X.Y.0/24.
func (n *Net) Prefix() netip.Prefix { return n.prefix }

// Namespaces lists the names of the Net's namespaces.
func (n *Net) Namespaces() []string {
	names := make([]string, len(n.hosts))
	for i, h := range n.hosts {
		names[i] = h.ns
	}
	return names
}

// Close kills every process left in the Net's namespaces and deletes the
// namespaces, their veths and /etc/netns entries, and the bridge. It is
// idempotent: later calls return the first call's error.
func (n *Net) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return n.err
	}
	n.closed = true
	var errs []error
	for _, h := range n.hosts {
		if err := h.killAll(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, h := range n.hosts {
		// Deleting one end of a veth pair deletes both; deleting it here
		// rather than with the namespace makes it gone when Close returns
		// (the kernel tears namespaces down asynchronously).
		if _, err := ip("link", "del", h.veth); err != nil && !notFound(err) {
			errs = append(errs, err)
		}
		if _, err := ip("netns", "del", h.ns); err != nil && !notFound(err) {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(filepath.Join(etcNetns, h.ns)); err != nil {
			errs = append(errs, fmt.Errorf("netns: %w", err))
		}
	}
	if n.bridge != "" {
		if _, err := ip("link", "del", n.bridge); err != nil && !notFound(err) {
			errs = append(errs, err)
		}
	}
	n.err = errors.Join(errs...)
	return n.err
}

// killAll SIGKILLs the processes in h's namespace until none is left.
func (h *Host) killAll() error {
	deadline := time.Now().Add(killWait)
	for {
		pids, err := h.pids()
		if err != nil {
			if notFound(err) {
				return nil
			}
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: processes %v still in %s after %v", pids, h.ns, killWait)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pids lists the live processes in h's namespace. A zombie has left it.
func (h *Host) pids() ([]int, error) {
	out, err := ip("netns", "pids", h.ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("netns: ip netns pids %s: odd pid %q", h.ns, f)
		}
		if !zombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // gone
	}
	// The state follows the command, which is in parentheses and may
	// itself hold ") ".
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// Name is the host's name: its namespace's name, which every host of the
// Net resolves to Addr through its /etc/hosts.
func (h *Host) Name() string { return h.ns }

// Addr is the host's IPv4 address, on Iface.
func (h *Host) Addr() string { return h.addr.String() }

// Iface is the interface inside the namespace that carries Addr; set
// GLOO_SOCKET_IFNAME to it (see the package documentation).
func (h *Host) Iface() string { return Iface }

// Command returns a command that runs name with args inside the host's
// namespace. ip netns exec replaces itself with name, so the command's
// process is the program itself: signals and ctx reach it directly.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
}

// Enter is Command without ip netns exec's private mounts: the program
// joins the host's network namespace alone (nsenter --net), so it sees
// the machine's filesystem as it is, cgroup hierarchies included (ip netns
// exec remounts /sys, which hides them), but not the host's /etc/hosts.
// Use it for programs that put their children in cgroups.
func (h *Host) Enter(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + h.ns, "--", name}, args...)...)
}

// LinkDown cuts the host off the bridge, as if its cable were pulled: its
// packets go nowhere and nothing reaches it; its own address stays, so its
// processes see silence, not an error, much as on a lost node.
func (h *Host) LinkDown() error {
	_, err := ip("link", "set", h.veth, "down")
	return err
}

// LinkUp reconnects a host that LinkDown cut off.
func (h *Host) LinkUp() error {
	_, err := ip("link", "set", h.veth, "up")
	return err
}

// ip runs ip with args and returns its standard output; the error holds
// its standard error and, where ip's message names one, the errno.
func ip(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		return out, &ipError{args: args, msg: msg, err: err}
	}
	return out, nil
}

// ipError is a failed ip command.
type ipError struct {
	args []string
	msg  string
	err  error
}

func (e *ipError) Error() string {
	return fmt.Sprintf("netns: ip %s: %s (%v)", strings.Join(e.args, " "), e.msg, e.err)
}

// Is matches the errno ip's message names, so callers can test for
// syscall.EPERM or syscall.ENOENT.
func (e *ipError) Is(target error) bool {
	switch target {
	case syscall.EPERM:
		return strings.Contains(e.msg, "Operation not permitted") || strings.Contains(e.msg, "Permission denied")
	case syscall.ENOENT:
		return strings.Contains(e.msg, "No such file") || strings.Contains(e.msg, "Cannot find device") ||
			strings.Contains(e.msg, "does not exist") || strings.Contains(e.msg, "Cannot open network namespace")
	}
	return false
}

func (e *ipError) Unwrap() error { return e.err }

func notFound(err error) bool { return errors.Is(err, syscall.ENOENT) }
