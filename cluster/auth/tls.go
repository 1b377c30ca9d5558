package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A cluster without certificates of its own still gets TLS: the head makes
// a CA, and its join token carries the CA's fingerprint, so anyone holding
// the token verifies the head with nothing more (kubeadm's
// --discovery-token-ca-cert-hash, k3s's K10 tokens). Agents serve a
// self-signed certificate whose fingerprint they register with over that
// verified channel, so the head verifies them the same way.

// joinPrefix starts a join token: "rt1-<sha256 of the CA, hex>-<secret>".
const joinPrefix = "rt1-"

// JoinToken is the token that joins a cluster whose head's CA has the
// fingerprint fp: the secret, with the fingerprint in front.
func JoinToken(secret, fp string) string {
	if fp == "" {
		return secret
	}
	return joinPrefix + fp + "-" + secret
}

// SplitToken parses a token: the secret that servers check, and the CA
// fingerprint that a join token carries ("" for a bare secret).
func SplitToken(token string) (secret, fp string) {
	rest, ok := strings.CutPrefix(token, joinPrefix)
	if !ok || len(rest) < sha256.Size*2+2 || rest[sha256.Size*2] != '-' {
		return token, ""
	}
	fp = rest[:sha256.Size*2]
	if _, err := hex.DecodeString(fp); err != nil {
		return token, ""
	}
	return rest[sha256.Size*2+1:], fp
}

// Fingerprint is the SHA-256 of a certificate's DER bytes, in hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ErrUntrustedServer is wrapped by the error of a TLS handshake with a
// server whose certificate does not chain to the pinned fingerprint.
var ErrUntrustedServer = errors.New("cluster: the server's certificate is not the one the token names")

// verifyPinned accepts a chain that holds a certificate with fingerprint
// fp and whose leaf that certificate signed (or is). Host names are not
// checked: the pin names one private CA, which signs for nobody else.
func verifyPinned(fp string) func(raw [][]byte, _ [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		certs := make([]*x509.Certificate, 0, len(raw))
		for _, der := range raw {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return fmt.Errorf("cluster: server certificate: %w", err)
			}
			certs = append(certs, c)
		}
		if len(certs) == 0 {
			return ErrUntrustedServer
		}
		for _, c := range certs {
			if Fingerprint(c.Raw) != fp {
				continue
			}
			roots := x509.NewCertPool()
			roots.AddCert(c)
			inter := x509.NewCertPool()
			for _, ic := range certs[1:] {
				inter.AddCert(ic)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return fmt.Errorf("%w: %w", ErrUntrustedServer, err)
			}
			return nil
		}
		return fmt.Errorf("%w (it sent %s); is this the head the token came from?", ErrUntrustedServer, Fingerprint(certs[len(certs)-1].Raw)[:16])
	}
}

// CA is a head's own certificate authority.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Fingerprint is the CA certificate's, for JoinToken.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.cert.Raw) }

// caValidity is long: the fingerprint is in every join token handed out,
// and a new CA means new tokens.
const caValidity = 10 * 365 * 24 * time.Hour

// LoadOrCreateCA reads the CA kept in dir (ca.pem, ca-key.pem), or makes
// one there: a head that restarts keeps its fingerprint, so the tokens
// agents and users hold stay good.
func LoadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if cerr == nil && kerr == nil {
		ca, err := parseCA(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("cluster: the head's CA in %s: %w (remove the directory to make a new one; joined agents will need the new token)", dir, err)
		}
		return ca, nil
	}
	if !errors.Is(cerr, os.ErrNotExist) && cerr != nil {
		return nil, fmt.Errorf("cluster: read the head's CA: %w", cerr)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cluster: CA key: %w", err)
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "rtrain cluster CA " + host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("cluster: CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("cluster: CA key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: CA directory: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	// The key first: a CA certificate without its key beside it would be
	// read back as a broken CA.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return parseCA(certPEM, keyPEM)
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, errors.New("not an rtrain CA")
	}
	return &CA{cert: cert, key: key}, nil
}

// Issue makes a server certificate for hosts (names or IPs), signed by
// the CA, with the CA in its chain so that a client pinning the CA finds
// it there.
func (ca *CA) Issue(hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster: server key: %w", err)
	}
	tmpl := serverTemplate(hosts, ca.cert.NotAfter)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cluster: server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}, nil
}

// SelfSigned makes a certificate for an agent's service; the agent
// registers its fingerprint with the head, which pins it.
func SelfSigned(hosts []string) (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("cluster: agent key: %w", err)
	}
	tmpl := serverTemplate(hosts, time.Now().Add(caValidity))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("cluster: agent certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, Fingerprint(der), nil
}

func serverTemplate(hosts []string, notAfter time.Time) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "rtrain"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("cluster: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cluster: write %s: %w", path, err)
	}
	return nil
}

// LocalHosts are the names and addresses a certificate for this machine
// lists, besides those given: what a browser checks the dashboard against.
func LocalHosts(extra ...string) []string {
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, extra...)
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
				hosts = append(hosts, ipn.IP.String())
			}
		}
	}
	seen := map[string]bool{}
	out := hosts[:0]
	for _, h := range hosts {
		if h != "" && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}
