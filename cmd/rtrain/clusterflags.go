package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/trainer"
)

// AddressEnv names the head's address for commands given no --address.
const AddressEnv = "RTRAIN_ADDRESS"

// addressForm is how --address and $RTRAIN_ADDRESS name a cluster's
// heads: the one head, or every head of a cluster with standbys, whose
// clients follow the leader among them.
const addressForm = "HOST:PORT[,HOST:PORT...]"

// stateDirEnv overrides where `rtrain start` keeps its daemons' pid files,
// logs, address and token.
const stateDirEnv = "RTRAIN_STATE_DIR"

// clusterFlags reach a head: its address, the token, TLS.
type clusterFlags struct {
	address  string
	token    string
	tlsCA    string
	tlsCert  string
	tlsKey   string
	stateDir string
	insecure bool
}

func addClusterFlags(f *pflag.FlagSet, o *clusterFlags, addressHelp string) {
	f.StringVar(&o.address, "address", "", addressHelp)
	f.StringVar(&o.token, "token", "", "the cluster token (default $"+auth.TokenEnv+", else the one a head started here saved)")
	f.StringVar(&o.tlsCA, "tls-ca", "", "CA certificate that verifies the other side (turns TLS on)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "this side's TLS certificate")
	f.StringVar(&o.tlsKey, "tls-key", "", "this side's TLS key")
	f.BoolVar(&o.insecure, "insecure", false, "plain TCP without TLS: the token and all traffic cross the network unencrypted (only on a network you trust)")
	f.StringVar(&o.stateDir, "state-dir", "", "where rtrain start keeps pid files, logs, the address and token (default $"+stateDirEnv+", else ~/.rtrain)")
}

func (o *clusterFlags) dir() (string, error) {
	if o.stateDir != "" {
		return o.stateDir, nil
	}
	if d := os.Getenv(stateDirEnv); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", usageError{errors.New("no home directory for rtrain's state; pass --state-dir")}
	}
	return filepath.Join(home, ".rtrain"), nil
}

// resolvedAddress is --address, $RTRAIN_ADDRESS, or the head started on
// this machine; "" when none is known.
func (o *clusterFlags) resolvedAddress() string {
	if o.address != "" {
		return o.address
	}
	if a := os.Getenv(AddressEnv); a != "" {
		return a
	}
	return o.startedHere()
}

// startedHere is the address of the head `rtrain start --head` started on
// this machine, "" when there is none.
func (o *clusterFlags) startedHere() string {
	if d, err := o.dir(); err == nil {
		if b, err := os.ReadFile(filepath.Join(d, "head.addr")); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}

func (o *clusterFlags) security() auth.Security {
	s := auth.Security{Token: o.token, TLSCA: o.tlsCA, TLSCert: o.tlsCert, TLSKey: o.tlsKey}
	if s.Token == "" {
		s.Token = os.Getenv(auth.TokenEnv)
	}
	if s.Token == "" {
		if d, err := o.dir(); err == nil {
			if b, err := os.ReadFile(filepath.Join(d, "token")); err == nil {
				s.Token = strings.TrimSpace(string(b))
			}
		}
	}
	return s
}

// client connects to the head for the cluster commands.
func (o *clusterFlags) client() (*trainer.Client, error) {
	addr := o.resolvedAddress()
	if addr == "" {
		return nil, usageError{fmt.Errorf("no cluster address: pass --address %s or set %s (or start a head here with `rtrain start --head`)", addressForm, AddressEnv)}
	}
	sec := o.security()
	if err := o.checkTransport(sec, addr); err != nil {
		return nil, err
	}
	return trainer.Dial(addr, sec)
}

// checkTransport refuses an address list with an empty entry, and to send
// the token in clear over a network: TLS (the join token's pin, or
// --tls-ca) unless --insecure is given or every head is on this machine's
// loopback.
func (o *clusterFlags) checkTransport(sec auth.Security, addr string) error {
	addrs, err := trainer.SplitAddresses(addr)
	if err != nil {
		return usageError{fmt.Errorf("--address or $%s: %w", AddressEnv, err)}
	}
	if sec.TLS() {
		if o.insecure {
			return usageError{errors.New("--insecure turns TLS off, but --tls-ca/--tls-cert or a join token (rt1-...) turn it on: give one or the other")}
		}
		return nil
	}
	if o.insecure {
		return nil
	}
	for _, a := range addrs {
		if !loopback(a) {
			return usageError{fmt.Errorf("the token does not name the head's CA, so %s cannot be verified and the token would cross the network in clear: pass the join token `rtrain start --head` printed (rt1-...; also in the head's state directory, file token), --tls-ca for your own certificates, or --insecure for a head started with --insecure", a)}
		}
	}
	return nil
}

// loopback reports whether addr (host:port) is on this machine's loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dialHead connects to the head at addr, one that another head named (the
// active one of a cluster with standbys), with the same security.
func (o *clusterFlags) dialHead(addr string) (*trainer.Client, error) {
	return trainer.Dial(addr, o.security())
}
