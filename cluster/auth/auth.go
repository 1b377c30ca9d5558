package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/internal/errgrpc"
	"github.com/rtrain/rtrain/internal/version"
)

// Agents run whatever code they are sent, so a cluster port without
// authentication is remote code execution for anyone who reaches it (Ray's
// CVE-2023-48022). Every call between CLI, head and agents carries the
// cluster token and rtrain's version; servers refuse calls without both.

// TokenEnv is the environment variable the CLI, agents and the head read
// the cluster token from when --token is not given.
const TokenEnv = "RTRAIN_TOKEN"

const (
	versionKey = "rtrain-version"
	authKey    = "authorization"
)

// ErrUnauthenticated is wrapped by the errors of calls the other side
// refused for a missing or wrong token.
var ErrUnauthenticated = errors.New("cluster: wrong or missing cluster token")

// ErrVersionMismatch is wrapped by the errors of calls refused because the
// two sides run different rtrain versions.
var ErrVersionMismatch = errors.New("cluster: rtrain versions differ")

// NewToken returns a fresh random cluster token.
func NewToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Security is how a server or client proves itself: the cluster token, and
// TLS when a certificate, a CA or a pin is given.
type Security struct {
	// Token is the cluster's secret, or a join token (JoinToken) that
	// also pins the head's CA.
	Token string
	// TLSCert and TLSKey are this side's certificate and key (servers
	// need them for TLS); TLSCA verifies the other side. With none of
	// these, Certificate and a pin, connections are plain TCP.
	TLSCert, TLSKey, TLSCA string
	// Certificate is a server's certificate held in memory (a head's own
	// CA issued it, or an agent made it); it stands for TLSCert and TLSKey.
	Certificate *tls.Certificate
	// Pin is the SHA-256 fingerprint (hex) of a certificate the server's
	// chain must hold; empty takes the one a join token carries.
	Pin string
}

func (s Security) secret() string {
	secret, _ := SplitToken(s.Token)
	return secret
}

// PinnedFingerprint is the certificate fingerprint a client of s requires
// of the server: Pin, else the one its join token carries.
func (s Security) PinnedFingerprint() string {
	if s.Pin != "" {
		return s.Pin
	}
	_, fp := SplitToken(s.Token)
	return fp
}

// tlsOn reports whether a client of s speaks TLS.
func (s Security) tlsOn() bool {
	return s.TLSCert != "" || s.TLSCA != "" || s.PinnedFingerprint() != ""
}

// TLS reports whether connections made or served with s are encrypted.
func (s Security) TLS() bool { return s.tlsOn() || s.Certificate != nil }

// ServerOptions are the gRPC options of a server that checks the token and
// the version of every call.
func (s Security) ServerOptions() ([]grpc.ServerOption, error) {
	if s.Token == "" {
		return nil, errors.New("cluster: a server needs the cluster token")
	}
	opts := []grpc.ServerOption{
		// The tap sees a call's headers before grpc-go reads its body: a
		// call without the token is refused before its (up to MaxRequest)
		// bytes are read into memory, which interceptors come too late for.
		grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
			return ctx, s.check(info.Header)
		}),
		grpc.MaxRecvMsgSize(MaxRequest),
		grpc.MaxSendMsgSize(maxMessage),
		// A handler returns its domain errors; they leave as statuses
		// that name their sentinels.
		grpc.ChainUnaryInterceptor(errgrpc.UnaryServerInterceptor),
		grpc.ChainStreamInterceptor(errgrpc.StreamServerInterceptor),
	}
	if s.TLSCA != "" && (s.TLSCert == "" || s.TLSKey == "") {
		// Serving plain TCP to clients that trust a CA and send the token
		// would give the token away.
		return nil, errors.New("cluster: --tls-ca on a head or agent needs --tls-cert and --tls-key too")
	}
	if s.TLSCert != "" || s.TLSKey != "" || s.Certificate != nil {
		cfg, err := s.tlsConfig(true)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	return opts, nil
}

// MaxRequest bounds a message a head or agent receives, whoever sends
// it: the largest are a job's configuration and a group's spec, whose
// arguments and environment exec holds to a few MiB; working directories
// and checkpoints travel in chunks (chunkSize).
const MaxRequest = 4 << 20

// maxMessage bounds a message a client receives or sends: a status of
// thousands of nodes, a long list of jobs. A server refuses more than
// MaxRequest before reading it.
const maxMessage = 256 << 20

// check refuses a call without the cluster token, then one from another
// rtrain version: the version is told only to those with the token.
func (s Security) check(md metadata.MD) error {
	got, _ := strings.CutPrefix(first(md, authKey), "Bearer ")
	if got == "" {
		return errgrpc.ToGRPC(&refusal{sentinel: ErrUnauthenticated,
			msg: fmt.Sprintf("this cluster needs its token: pass --token or set %s (the head printed it when it started)", TokenEnv)})
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.secret())) != 1 {
		return errgrpc.ToGRPC(&refusal{sentinel: ErrUnauthenticated,
			msg: fmt.Sprintf("wrong cluster token: pass the head's token with --token or %s", TokenEnv)})
	}
	if v := first(md, versionKey); v != version.Version {
		if v == "" {
			v = "unknown"
		}
		// The message is what rtrain versions before VERSION_MISMATCH
		// recognized the refusal by.
		return errgrpc.ToGRPC(&refusal{sentinel: ErrVersionMismatch,
			msg: fmt.Sprintf("rtrain version mismatch: this side runs %s, the caller runs %s; install the same rtrain on every node and client", version.Version, v)})
	}
	return nil
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Dial connects to a head or agent at addr. It does not wait for the
// connection; the first call does.
func (s Security) Dial(addr string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if s.tlsOn() {
		cfg, err := s.tlsConfig(false)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(callCreds{token: s.secret(), tls: s.tlsOn()}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)),
		// Every call's error matches the sentinels the other side's
		// status names.
		grpc.WithChainUnaryInterceptor(errgrpc.UnaryClientInterceptor),
		grpc.WithChainStreamInterceptor(errgrpc.StreamClientInterceptor),
	)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", addr, err)
	}
	return conn, nil
}

type callCreds struct {
	token string
	tls   bool
}

func (c callCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{authKey: "Bearer " + c.token, versionKey: version.Version}, nil
}

func (c callCreds) RequireTransportSecurity() bool { return c.tls }

func (s Security) tlsConfig(server bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if server && s.Certificate != nil {
		cfg.Certificates = []tls.Certificate{*s.Certificate}
	} else if s.TLSCert != "" || s.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(s.TLSCert, s.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("cluster: --tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if s.TLSCA != "" {
		pem, err := os.ReadFile(s.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("cluster: --tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster: --tls-ca %s holds no PEM certificate", s.TLSCA)
		}
		if server {
			cfg.ClientCAs = pool
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		} else {
			cfg.RootCAs = pool
		}
	}
	if fp := s.PinnedFingerprint(); !server && fp != "" && s.TLSCA == "" {
		// The pin replaces the system roots and host names, which know
		// nothing of a cluster's private CA: verifyPinned checks the chain.
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = verifyPinned(fp)
	}
	if server && len(cfg.Certificates) == 0 {
		return nil, errors.New("cluster: a TLS server needs --tls-cert and --tls-key")
	}
	return cfg, nil
}

// CallError is a refused call to a head or agent, named by what was
// being done. A node's isolation error names the node and what it cannot
// enforce already.
func CallError(what string, err error) error {
	err = RemoteError(err)
	if errors.Is(err, cluster.ErrNotIsolated) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// RemoteError turns the error of a call to a head or agent into one line
// that says what to do, matching with errors.Is the sentinels the other
// side's status names (errgrpc): ErrUnauthenticated, ErrVersionMismatch,
// ErrNotIsolated and the others.
func RemoteError(err error) error {
	err = errgrpc.FromGRPC(err)
	if status.Code(err) == codes.Unavailable && errgrpc.Reason(err) == "" {
		return fmt.Errorf("cannot reach it (%w); is the head running? `rtrain start --head` starts one", err)
	}
	return err
}

// refusal is a server's refusal of a call: it prints as its message alone
// and matches its sentinel, which errgrpc names on the wire.
type refusal struct {
	sentinel error
	msg      string
}

func (e *refusal) Error() string        { return e.msg }
func (e *refusal) Is(target error) bool { return target == e.sentinel }
