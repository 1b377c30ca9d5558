package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/pyshim"
)

// ErrInvalidNode is wrapped by the errors of a node's configuration that
// its operator must fix: its address, its data directory.
var ErrInvalidNode = errors.New("agent: invalid node configuration")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidNode, fmt.Sprintf(format, args...))
}

// NodeConfig is this machine joining a cluster as a node:
// `rtrain start --address`.
type NodeConfig struct {
	// HeadAddr is the head's host:port, or the heads' (the active one and
	// its standbys), comma-separated.
	HeadAddr string
	Security auth.Security
	// HeadTimeout is Config.HeadTimeout.
	HeadTimeout time.Duration
	// NodeName names the node; empty: the host name. The head adds a
	// suffix when another live node has the name.
	NodeName string
	// NodeIP is the address other nodes reach this one at. Empty: the
	// address this machine uses to reach the head.
	NodeIP string
	// Port is the agent service's port; 0 picks one.
	Port int
	// Overrides replace what discovery finds (--num-cpus, --num-gpus,
	// --memory).
	Overrides discover.Overrides
	// DataDir keeps the node's working directories, logs and staged
	// checkpoints. Empty: ~/rtrain_results/.agent.
	DataDir string
	// NVML is the library GPUs are found and sampled through; nil is the
	// system's (libnvidia-ml.so.1). Tests give go-nvml's mock.
	NVML nvml.Interface
	// Resolve finds python on this node for a job (trainer.ResolvePython).
	Resolve PythonResolver
	// ShimDir is where the Python package rtrain is unpacked; empty: the
	// user's cache directory.
	ShimDir string
}

// StartNode discovers this machine, joins the head and serves jobs until
// ctx ends.
func StartNode(ctx context.Context, cfg NodeConfig, log *slog.Logger) (*Running, error) {
	if cfg.Resolve == nil {
		return nil, errors.New("agent: NodeConfig.Resolve is required (trainer.ResolvePython)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lib := cfg.NVML
	if lib == nil {
		lib = nvml.New()
	}
	node, err := discover.NodeWith(ctx, log, lib, "/dev", cfg.Overrides)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if node.Hostname, err = os.Hostname(); err != nil {
		node.Hostname = "node"
	}
	node.ID = cfg.NodeName
	if node.ID == "" {
		node.ID = node.Hostname
	}
	node.Addr = cfg.NodeIP
	if node.Addr == "" {
		addrs, err := ParseHeadAddrs(cfg.HeadAddr)
		if err != nil {
			return nil, invalid("%v", err)
		}
		if node.Addr, err = routeTo(ctx, addrs[0]); err != nil {
			return nil, err
		}
	}
	if node.Iface, err = ifaceOf(node.Addr); err != nil {
		return nil, err
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, invalid("no home directory for the agent's files; pass --data-dir")
		}
		dataDir = filepath.Join(home, "rtrain_results", ".agent")
	}
	shimDir := cfg.ShimDir
	if shimDir == "" {
		shimDir = pyshim.CacheDir()
	}
	shim, err := pyshim.Install(shimDir)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return Start(ctx, Config{
		HeadAddr: cfg.HeadAddr, Security: cfg.Security, Node: node, Port: cfg.Port,
		DataDir: dataDir, ShimDir: shim, Resolve: cfg.Resolve, NVML: lib, HeadTimeout: cfg.HeadTimeout,
	}, log)
}

// routeTo is the local address this machine uses to reach addr: the one
// the head and the other nodes can reach back, as Ray's node IP.
func routeTo(ctx context.Context, addr string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr) // sends nothing: picks the route
	if err != nil {
		return "", invalid("cannot find this node's address towards the head %s: %v; pass --node-ip-address", addr, err)
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// ifaceOf is the name of the interface that holds ip.
func ifaceOf(ip string) (string, error) {
	want := net.ParseIP(ip)
	if want == nil {
		return "", invalid("node address %q is not an IP address", ip)
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("agent: list interfaces: %w", err)
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(want) {
				return ifc.Name, nil
			}
		}
	}
	return "", invalid("no interface of this machine has the address %s; pass --node-ip-address with one of its own", ip)
}
