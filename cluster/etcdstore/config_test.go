package etcdstore_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/etcdstore"
)

func TestParseURL(t *testing.T) {
	for name, tc := range map[string]struct {
		url  string
		want etcdstore.Config
	}{
		"one host":         {"etcd://10.0.0.5:2379", etcdstore.Config{Endpoints: []string{"10.0.0.5:2379"}}},
		"three hosts":      {"etcd://a:2379,b:2380,c:1", etcdstore.Config{Endpoints: []string{"a:2379", "b:2380", "c:1"}}},
		"default port":     {"etcd://etcd-1,etcd-2:3000", etcdstore.Config{Endpoints: []string{"etcd-1:2379", "etcd-2:3000"}}},
		"ipv6":             {"etcd://[::1]:2379,[fe80::1]", etcdstore.Config{Endpoints: []string{"[::1]:2379", "[fe80::1]:2379"}}},
		"prefix":           {"etcd://h:2379/team-a", etcdstore.Config{Endpoints: []string{"h:2379"}, Prefix: "/team-a/"}},
		"nested prefix":    {"etcd://h:2379/a/b/", etcdstore.Config{Endpoints: []string{"h:2379"}, Prefix: "/a/b/"}},
		"slash, no prefix": {"etcd://h:2379/", etcdstore.Config{Endpoints: []string{"h:2379"}}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := etcdstore.ParseURL(tc.url)
			require.NoError(t, err)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseURL(%q) (-want +got):\n%s", tc.url, diff)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	for name, url := range map[string]string{
		"empty":         "",
		"no scheme":     "10.0.0.5:2379",
		"http":          "http://10.0.0.5:2379",
		"no host":       "etcd://",
		"only a prefix": "etcd:///rtrain",
		"empty host":    "etcd://a:2379,,b:2379",
		"trailing ,":    "etcd://a:2379,",
		"bad port":      "etcd://a:http",
		"port 0":        "etcd://a:0",
		"port too big":  "etcd://a:65536",
		"empty port":    "etcd://a:",
		"no host name":  "etcd://:2379",
		"bare ipv6":     "etcd://::1:2379",
		"query":         "etcd://a:2379?x=1",
		"user":          "etcd://me@a:2379",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := etcdstore.ParseURL(url)
			require.Error(t, err)
			msg := err.Error()
			// One line that says what to write.
			require.NotContains(t, msg, "\n")
			require.True(t, strings.HasPrefix(msg, "etcdstore: "), msg)
			require.Contains(t, msg, "write etcd://HOST:2379[,HOST:2379...][/PREFIX]")
		})
	}
}

func TestOpenChecksConfig(t *testing.T) {
	for name, cfg := range map[string]etcdstore.Config{
		"no endpoints":   {},
		"empty endpoint": {Endpoints: []string{"a:2379", " "}},
		"negative TTL":   {Endpoints: []string{"a:2379"}, TTL: -time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := etcdstore.Open(context.Background(), cfg, nil)
			require.Error(t, err)
			require.Nil(t, s)
		})
	}
}

// TestOpenNoEtcd: a store URL where nothing listens is an error within
// the dial timeout, not a hang.
func TestOpenNoEtcd(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{addr}, DialTimeout: 500 * time.Millisecond}, nil)
	require.ErrorContains(t, err, "no answer from etcd at "+addr)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestConfigDefaults(t *testing.T) {
	srv := etcd(t)
	for name, tc := range map[string]struct {
		cfg, want etcdstore.Config
	}{
		"zero": {
			etcdstore.Config{},
			etcdstore.Config{Prefix: "/rtrain/", TTL: 5 * time.Second, DialTimeout: 5 * time.Second},
		},
		"rounded up": {
			etcdstore.Config{Prefix: "/x", TTL: 1500 * time.Millisecond, DialTimeout: time.Second},
			etcdstore.Config{Prefix: "/x/", TTL: 2 * time.Second, DialTimeout: time.Second},
		},
	} {
		t.Run(name, func(t *testing.T) {
			tc.cfg.Endpoints, tc.want.Endpoints = srv.Endpoints(), srv.Endpoints()
			s, err := etcdstore.Open(timeout(t, 30*time.Second), tc.cfg, nil)
			require.NoError(t, err)
			defer s.Close()
			if diff := cmp.Diff(tc.want, s.Config()); diff != "" {
				t.Errorf("Config (-want +got):\n%s", diff)
			}
		})
	}
}
