// Package tlsconf is the gateway's transport security: the client-side
// TLS settings (certificates chosen by SNI, client certificate
// verification, reload without restart), the TLS settings of upstream
// connections (CA bundle, server name, client certificate), and the
// forwarding of a verified client certificate's identity upstream.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/internal/certfile"
)

// Server is the TLS of a client-facing listener (the gateway's `tls:`).
// Either cert and key (one certificate) or certificates (several, chosen
// by SNI) are given.
type Server struct {
	// Cert and Key are one PEM certificate chain and its key: the same as
	// certificates with one entry.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Certificates are certificate/key pairs in PEM files. A client's SNI
	// server name picks the first whose leaf names it (DNS SANs, wildcards
	// one label deep, or IP SANs); the first is the default for clients
	// that name nothing or a name no certificate has.
	Certificates []CertKey `yaml:"certificates"`
	// ClientCA is a PEM bundle of the CAs that sign client certificates.
	// When set, the gateway asks every client for a certificate and
	// verifies any it gets against this bundle (a wrong one fails the
	// handshake); routes decide with client_cert whether one is required.
	// Default: no client certificates are asked for.
	ClientCA string `yaml:"client_ca"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or
	// "1.3".
	MinVersion string `yaml:"min_version"`
	// HandshakeTimeout bounds a TLS handshake from the connection's
	// accept; a client that has not finished by then is disconnected.
	// Default 5s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// WatchInterval is how often the certificate, key and client CA files
	// are checked for changes (modification time and size); a change
	// reloads them. Default 10s; "off" is not offered: reload on
	// /admin/reload and SIGHUP happens in any case.
	WatchInterval time.Duration `yaml:"watch_interval"`
}

// CertKey is one certificate chain and its private key, PEM files.
type CertKey struct {
	// Cert is the PEM certificate chain (leaf first). Required.
	Cert string `yaml:"cert"`
	// Key is the PEM private key of the leaf. Required.
	Key string `yaml:"key"`
}

// Defaults of Server.
const (
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultWatchInterval    = 10 * time.Second
)

// Pairs returns the certificate pairs in order: cert/key first, then
// certificates.
func (s *Server) Pairs() []CertKey {
	var out []CertKey
	if s.Cert != "" || s.Key != "" {
		out = append(out, CertKey{Cert: s.Cert, Key: s.Key})
	}
	return append(out, s.Certificates...)
}

// Validate checks the settings without reading files; each problem is a
// config.FieldError at its key.
func (s *Server) Validate() error {
	var errs []error
	if s.Cert == "" && s.Key != "" {
		errs = append(errs, config.Fieldf("cert", "missing: both cert and key are required"))
	} else if s.Key == "" && s.Cert != "" {
		errs = append(errs, config.Fieldf("key", "missing: both cert and key are required"))
	}
	if len(s.Pairs()) == 0 {
		errs = append(errs, config.Fieldf("cert", "no certificate: expected cert and key, or certificates: [{cert, key}, ...]"))
	}
	for i, p := range s.Certificates {
		if p.Cert == "" {
			errs = append(errs, config.Fieldf(fmt.Sprintf("certificates[%d].cert", i), "missing: expected a PEM certificate file"))
		}
		if p.Key == "" {
			errs = append(errs, config.Fieldf(fmt.Sprintf("certificates[%d].key", i), "missing: expected a PEM key file"))
		}
	}
	if _, err := ParseVersion(s.MinVersion); err != nil {
		errs = append(errs, config.Fieldf("min_version", "%v", err))
	}
	if s.HandshakeTimeout < 0 || s.HandshakeTimeout > time.Hour {
		errs = append(errs, config.Fieldf("handshake_timeout", "%s out of range: expected 1ms to 1h (default 5s)", s.HandshakeTimeout))
	}
	if s.WatchInterval < 0 {
		errs = append(errs, config.Fieldf("watch_interval", "negative duration %s", s.WatchInterval))
	}
	return errors.Join(errs...)
}

// ParseVersion reads a TLS version setting: "" (1.2), "1.2" or "1.3".
func ParseVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unknown TLS version %q: expected 1.2 or 1.3 (older versions are not offered)", v)
}

// cipherSuites are the TLS 1.2 suites offered: ECDHE key exchange (forward
// secrecy) with AEAD ciphers only; no RSA key exchange, CBC, 3DES or RC4.
// TLS 1.3's suites are all strong and not configurable in Go.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// CipherSuites returns the TLS 1.2 cipher suites switchyard offers, on
// both sides.
func CipherSuites() []uint16 { return append([]uint16(nil), cipherSuites...) }

// loaded is one generation of a listener's certificates and client CAs.
type loaded struct {
	certs   []*tls.Certificate // Leaf set
	clients *x509.CertPool     // nil: client certificates not asked for
	stamp   string             // files' modification times and sizes
	cfg     *tls.Config        // what GetConfigForClient hands out
}

// Certs serves a listener's certificates: it picks one by SNI and
// reloads the files on Reload or when they change, keeping the running
// set when the new files do not load. Safe for concurrent use.
type Certs struct {
	base *tls.Config // protocol settings shared by every generation
	mu   sync.Mutex  // serialises reloads
	cur  atomic.Pointer[loaded]
	spec atomic.Pointer[Server]
	// failed is the file state that last failed to load, so Watch reports
	// a broken file once, not every interval.
	failed atomic.Pointer[string]
	log    *slog.Logger
	stop   chan struct{}
	stopO  sync.Once
}

// NewCerts loads the certificates of s (validated) for a listener that
// negotiates nextProtos by ALPN. Errors name the file that failed.
func NewCerts(s Server, nextProtos []string, log *slog.Logger) (*Certs, error) {
	minV, err := ParseVersion(s.MinVersion)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certs{log: log, stop: make(chan struct{}), base: &tls.Config{
		MinVersion:   minV,
		CipherSuites: cipherSuites,
		NextProtos:   nextProtos,
		// Renegotiation is a client-side option in crypto/tls: a Go server
		// never renegotiates and answers a renegotiation attempt with an
		// alert. Session tickets stay on (resumption saves handshakes).
	}}
	l, err := c.load(&s)
	if err != nil {
		return nil, err
	}
	c.cur.Store(l)
	c.spec.Store(&s)
	return c, nil
}

// Load reads and checks the files of s (for `--check`): every pair and
// the client CA bundle.
func Load(s Server) error {
	c := &Certs{base: &tls.Config{}}
	_, err := c.load(&s)
	return err
}

func (c *Certs) load(s *Server) (*loaded, error) {
	l := &loaded{}
	var errs []error
	var stamp strings.Builder
	for _, p := range s.Pairs() {
		stamp.WriteString(fileStamp(p.Cert) + fileStamp(p.Key))
		cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			errs = append(errs, fmt.Errorf("loading certificate %s / key %s: %w", p.Cert, p.Key, err))
			continue
		}
		l.certs = append(l.certs, &cert) // Leaf is parsed by LoadX509KeyPair
	}
	if s.ClientCA != "" {
		stamp.WriteString(fileStamp(s.ClientCA))
		pool, err := LoadCAs(s.ClientCA)
		if err != nil {
			errs = append(errs, err)
		}
		l.clients = pool
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	l.stamp = stamp.String()
	cfg := c.base.Clone()
	cfg.GetCertificate = l.pick
	if l.clients != nil {
		cfg.ClientCAs = l.clients
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	l.cfg = cfg
	return l, nil
}

// LoadCAs reads a PEM bundle of CA certificates.
func LoadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", path)
	}
	return pool, nil
}

func fileStamp(path string) string { return certfile.Stamp(path) }

// pick chooses the certificate for a ClientHello: the first whose leaf
// names the SNI server name (x509's VerifyHostname), else the first. With
// one certificate there is nothing to choose: the common case costs no
// VerifyHostname (which lower-cases, splits and allocates) a handshake.
func (l *loaded) pick(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(l.certs) > 1 && hello.ServerName != "" {
		for _, c := range l.certs {
			if c.Leaf != nil && c.Leaf.VerifyHostname(hello.ServerName) == nil {
				return c, nil
			}
		}
	}
	return l.certs[0], nil
}

// TLSConfig is the listener's config: its GetConfigForClient hands each
// connection the current generation's settings, so a reload applies to
// the next handshake.
func (c *Certs) TLSConfig() *tls.Config {
	cfg := c.base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return c.cur.Load().cfg, nil }
	// Unused (GetConfigForClient answers first) but lets net/http see a
	// config that can serve.
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load().pick(h) }
	return cfg
}

// VerifiesClients reports whether client certificates are asked for.
func (c *Certs) VerifiesClients() bool { return c.cur.Load().clients != nil }

// Reload re-reads the files of s (the new settings; nil: the current
// ones). When any fails to load, the running certificates stay and the
// error says which file; the protocol settings (min_version) are the
// listener's and change only with a restart.
func (c *Certs) Reload(s *Server) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s == nil {
		s = c.spec.Load()
	}
	l, err := c.load(s)
	if err != nil {
		c.log.Error("TLS certificates not reloaded: the running ones stay", "error", err.Error())
		return err
	}
	c.cur.Store(l)
	c.spec.Store(s)
	c.log.Info("TLS certificates loaded", "certificates", len(l.certs), "client_ca", s.ClientCA != "")
	return nil
}

// Watch checks the files every interval (default 10s) and reloads them
// when their modification time or size changed, until Close. A file
// caught half-written fails to load and is retried at the next change.
func (c *Certs) Watch(interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.reloadIfChanged()
	}
}

func (c *Certs) reloadIfChanged() {
	s := c.spec.Load()
	var stamp strings.Builder
	for _, p := range s.Pairs() {
		stamp.WriteString(fileStamp(p.Cert) + fileStamp(p.Key))
	}
	if s.ClientCA != "" {
		stamp.WriteString(fileStamp(s.ClientCA))
	}
	if stamp.String() == c.cur.Load().stamp || stamp.String() == c.failedStamp() {
		return
	}
	if err := c.Reload(nil); err != nil {
		c.setFailed(stamp.String())
	}
}

func (c *Certs) failedStamp() string {
	if f := c.failed.Load(); f != nil {
		return *f
	}
	return ""
}

func (c *Certs) setFailed(s string) { c.failed.Store(&s) }

// Close stops Watch.
func (c *Certs) Close() { c.stopO.Do(func() { close(c.stop) }) }
