package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Defaults of LocalCA.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 90 * 24 * time.Hour
	DefaultRenewBefore  = 30 * 24 * time.Hour
	DefaultTrustDomain  = "switchyard.local"
)

// LocalCA is a certificate authority kept in a directory: ca.crt and
// ca.key (ECDSA P-256, key file 0600), created on first use and reused
// after, and one leaf certificate per component (NAME.crt, NAME.key),
// usable as server and client certificate, with the component's identity
// as subject common name and as the URI SAN spiffe://TRUST-DOMAIN/NAME,
// and 127.0.0.1, ::1 and localhost as names. `hitch up --secure` keeps
// one in DATA/pki. It is for one machine's processes, not a public CA.
type LocalCA struct {
	// Dir holds the files. Created 0700 if missing.
	Dir string
	// TrustDomain is the authority of the URI SANs. Default
	// DefaultTrustDomain.
	TrustDomain string
	// CAValidity, LeafValidity: lifetimes of new certificates.
	CAValidity, LeafValidity time.Duration
	// RenewBefore: a leaf expiring within this is issued anew. Default
	// DefaultRenewBefore (a third of LeafValidity when that is shorter).
	RenewBefore time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// Created reports whether Open made a new CA (false: reused).
	Created bool
}

// Leaf names one component's certificate files.
type Leaf struct {
	Name, Cert, Key string
	// Issued reports whether this call issued it (new, renewed or
	// reissued because it was not this CA's); false: reused.
	Issued bool
	// NotAfter is the certificate's expiry.
	NotAfter time.Time
}

var leafName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// CACert is the CA certificate's file (what `curl --cacert` takes).
func (c *LocalCA) CACert() string { return filepath.Join(c.Dir, "ca.crt") }

func (c *LocalCA) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Open loads the CA from Dir, creating it if ca.crt and ca.key are both
// missing. One of them alone, an unreadable or expired CA, or key files
// readable by others are errors naming the file.
func (c *LocalCA) Open() error {
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultTrustDomain
	}
	if c.CAValidity == 0 {
		c.CAValidity = DefaultCAValidity
	}
	if c.LeafValidity == 0 {
		c.LeafValidity = DefaultLeafValidity
	}
	if c.RenewBefore == 0 {
		c.RenewBefore = min(DefaultRenewBefore, c.LeafValidity/3)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	certPath, keyPath := c.CACert(), filepath.Join(c.Dir, "ca.key")
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		return c.create(certPath, keyPath)
	case errors.Is(certErr, os.ErrNotExist) || errors.Is(keyErr, os.ErrNotExist):
		return fmt.Errorf("local CA in %s: one of ca.crt and ca.key is missing: restore it, or remove both (and every leaf) to make a new CA", c.Dir)
	}
	cert, key, err := loadPair(certPath, keyPath)
	if err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	if !cert.IsCA {
		return fmt.Errorf("local CA: %s is not a CA certificate", certPath)
	}
	if c.now().After(cert.NotAfter) {
		return fmt.Errorf("local CA: %s expired on %s: remove %s (ca.crt, ca.key and the leaves) to make a new one", certPath, cert.NotAfter.Format(time.RFC3339), c.Dir)
	}
	c.cert, c.key = cert, key
	return nil
}

func (c *LocalCA) create(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "switchyard local CA", Organization: []string{c.TrustDomain}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(c.CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return fmt.Errorf("local CA: %w", err)
	}
	c.cert, _ = x509.ParseCertificate(der)
	c.key, c.Created = key, true
	return nil
}

// Leaf returns component name's certificate, issuing it when missing,
// expiring within RenewBefore, not signed by this CA, or unreadable.
func (c *LocalCA) Leaf(name string) (Leaf, error) {
	if c.cert == nil {
		return Leaf{}, errors.New("local CA: Open first")
	}
	if !leafName.MatchString(name) {
		return Leaf{}, fmt.Errorf("local CA: leaf name %q: expected lower-case letters, digits, '.' and '-'", name)
	}
	l := Leaf{Name: name, Cert: filepath.Join(c.Dir, name+".crt"), Key: filepath.Join(c.Dir, name+".key")}
	if cert, _, err := loadPair(l.Cert, l.Key); err == nil && cert.CheckSignatureFrom(c.cert) == nil &&
		c.now().Add(c.RenewBefore).Before(cert.NotAfter) && cert.Subject.CommonName == name {
		l.NotAfter = cert.NotAfter
		return l, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) && isPermErr(err) {
		return Leaf{}, fmt.Errorf("local CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Leaf{}, err
	}
	now := c.now()
	notAfter := now.Add(c.LeafValidity)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{c.TrustDomain}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name, "localhost"}, // name: a client dialing with server_name NAME checks the identity
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		URIs:         []*url.URL{{Scheme: "spiffe", Host: c.TrustDomain, Path: "/" + name}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return Leaf{}, err
	}
	if err := writePair(l.Cert, l.Key, der, key); err != nil {
		return Leaf{}, fmt.Errorf("local CA: %w", err)
	}
	l.Issued, l.NotAfter = true, notAfter
	return l, nil
}

// permError marks a key file others may read.
type permError struct{ path string }

func (e *permError) Error() string {
	return fmt.Sprintf("%s: private key readable by group or others: chmod 600 it", e.path)
}

func isPermErr(err error) bool {
	var p *permError
	return errors.As(err, &p)
}

func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if st, err := os.Stat(keyPath); err != nil {
		return nil, nil, err
	} else if st.Mode().Perm()&0o077 != 0 {
		return nil, nil, &permError{keyPath}
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("%s, %s: %w", certPath, keyPath, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%s: expected an ECDSA key", keyPath)
	}
	return cert, key, nil
}

// writePair writes the certificate (0644) and key (0600), each through a
// temporary file renamed into place, key first.
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeAtomic(path string, b []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil { // an old tmp file kept its mode
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// PeerName is the subject common name of the verified certificate a TLS
// peer presented, "" when there is none.
func PeerName(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].Subject.CommonName
}

// ServerConfig is the TLS config of a LocalCA component's server: its
// own certificate (cert, key); client certificates verified against the
// CA in caFile. With allow nil they are verified when given, not
// required; otherwise one is required and its common name must be one
// allow approves, or the handshake fails.
func ServerConfig(caFile, cert, key string, allow func(name string) bool) (*tls.Config, error) {
	cfg, err := ClientConfig(caFile, cert, key)
	if err != nil {
		return nil, err
	}
	cfg.ClientCAs, cfg.RootCAs = cfg.RootCAs, nil
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	if allow != nil {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if name := PeerName(&cs); !allow(name) {
				return fmt.Errorf("client certificate %q is not allowed here", name)
			}
			return nil
		}
	}
	// Every handshake takes cfg itself (GetConfigForClient), so its
	// GetCertificate (the watched files) answers even when a caller such
	// as httptest puts a certificate of its own into the outer config.
	outer := cfg.Clone()
	outer.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return cfg, nil }
	return outer, nil
}

// ClientConfig is the TLS config of a LocalCA component as a client: its
// certificate (cert, key) presented, servers verified against caFile.
// The certificate files are watched (FileCert): a renewed leaf is used
// from the next handshake on.
func ClientConfig(caFile, cert, key string) (*tls.Config, error) {
	pool, err := LoadCAs(caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, CipherSuites: CipherSuites()}
	if cert != "" || key != "" {
		fc, err := LoadFileCert(cert, key)
		if err != nil {
			return nil, err
		}
		// Re-read when renewed (LocalCA.Renew): long-lived processes pick
		// up their new leaf at the next handshake.
		cfg.GetClientCertificate, cfg.GetCertificate = fc.GetClientCertificate, fc.GetCertificate
	}
	return cfg, nil
}

// ExpectServer returns a copy of cfg (a client config) that also requires
// the server's certificate to name want as its common name.
func ExpectServer(cfg *tls.Config, want string) *tls.Config {
	c := cfg.Clone()
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if got := PeerName(&cs); got != want {
			return fmt.Errorf("server certificate is %q's, expected %q's", got, want)
		}
		return nil
	}
	return c
}
