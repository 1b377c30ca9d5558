package etcdstore

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultPrefix is where a store keeps its keys when Config.Prefix is "".
const DefaultPrefix = "/rtrain/"

// DefaultPort is the port ParseURL gives a host that names none: etcd's
// client port.
const DefaultPort = "2379"

const (
	defaultTTL         = 5 * time.Second
	defaultDialTimeout = 5 * time.Second
)

// urlForm is what ParseURL's errors tell a user to write.
const urlForm = "etcd://HOST:2379[,HOST:2379...][/PREFIX]"

// Config says which etcd cluster keeps a head's tables and how its heads
// elect the active one.
type Config struct {
	// Endpoints are the etcd members' client addresses, "host:port" or
	// "http://host:port"; at least one.
	Endpoints []string
	// Prefix comes before every key the store uses, so that several
	// rtrain clusters can share one etcd; "" means DefaultPrefix. A "/"
	// is added at the end when it lacks one.
	Prefix string
	// TTL is a candidate's lease: a leader that has not renewed it for
	// this long has lost, and a standby takes over about TTL after the
	// leader died. It is rounded up to whole seconds, etcd's unit; 0
	// means 5s. etcd raises a TTL below its minimum (2s with its default
	// heartbeat and election timeout).
	TTL time.Duration
	// DialTimeout bounds Open's first contact with etcd and each attempt
	// to connect after that; 0 means 5s.
	DialTimeout time.Duration
}

// withDefaults validates c and fills in the zero values.
func (c Config) withDefaults() (Config, error) {
	if len(c.Endpoints) == 0 {
		return c, errors.New("etcdstore: no etcd endpoints; give at least one, e.g. " + urlForm)
	}
	for _, ep := range c.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return c, fmt.Errorf("etcdstore: empty etcd endpoint in %q", c.Endpoints)
		}
	}
	if c.TTL < 0 || c.DialTimeout < 0 {
		return c, fmt.Errorf("etcdstore: negative TTL %s or dial timeout %s", c.TTL, c.DialTimeout)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.TTL == 0 {
		c.TTL = defaultTTL
	}
	c.TTL = c.TTL.Round(0)
	if r := c.TTL % time.Second; r != 0 {
		c.TTL += time.Second - r
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = defaultDialTimeout
	}
	return c, nil
}

// ParseURL reads a store URL, etcd://HOST:PORT[,HOST:PORT...][/PREFIX], as
// given to rtrain start --head --store. A host without a port gets
// DefaultPort; a path is the key prefix ("/team-a" keeps keys under
// "/team-a/"), none means DefaultPrefix. TTL and DialTimeout are left 0.
func ParseURL(s string) (Config, error) {
	bad := func(why string) (Config, error) {
		return Config{}, fmt.Errorf("etcdstore: store %q %s; write %s, e.g. etcd://10.0.0.5:2379", s, why, urlForm)
	}
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return bad("is not an etcd:// URL")
	}
	if strings.ContainsAny(rest, "?#@ ") {
		return bad("has a query, fragment, user or space")
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if hosts == "" {
		return bad("names no etcd host")
	}
	var cfg Config
	for _, h := range strings.Split(hosts, ",") {
		if h == "" {
			return bad("has an empty host")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			// No port (or a bare IPv6 address in brackets): etcd's.
			if host, port, err = net.SplitHostPort(h + ":" + DefaultPort); err != nil {
				return bad(fmt.Sprintf("has a bad host %q", h))
			}
		}
		if host == "" || strings.ContainsAny(host, "[]") {
			return bad(fmt.Sprintf("has a bad host %q", h))
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("has a bad port in %q", h))
		}
		cfg.Endpoints = append(cfg.Endpoints, net.JoinHostPort(host, port))
	}
	if path = strings.Trim(path, "/"); path != "" {
		cfg.Prefix = "/" + path + "/"
	}
	return cfg, nil
}
