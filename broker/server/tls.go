package server

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/tlsconf"
)

// TLSConfig is the `tls:` block of the broker's config file: both the
// native and the HTTP listener then speak TLS 1.2 or newer only.
//
//	tls:
//	  cert: /etc/switchyard/broker.crt    # PEM certificate chain
//	  key: /etc/switchyard/broker.key     # PEM private key
//	  client_ca: /etc/switchyard/ca.crt   # verify client certificates (mTLS)
//	  require_client_cert: false          # true: refuse clients without one
type TLSConfig struct {
	// Cert is the PEM file of the server's certificate chain. Required.
	Cert string `yaml:"cert"`
	// Key is the PEM file of its private key. Required.
	Key string `yaml:"key"`
	// ClientCA is a PEM bundle of the CAs whose client certificates are
	// accepted; a certificate from another CA fails the handshake, and a
	// verified one logs in as the user listing its name in certs. Default
	// none: client certificates are not asked for.
	ClientCA string `yaml:"client_ca"`
	// RequireClientCert refuses, in the handshake, clients without a
	// certificate from ClientCA. Default false (users may log in with a
	// password or token instead).
	RequireClientCert bool `yaml:"require_client_cert"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
}

// Validate reports every problem, with key paths relative to the block.
// It does not read the files.
func (c *TLSConfig) Validate() error {
	var errs []error
	if c.Cert == "" {
		errs = append(errs, config.Fieldf("cert", "missing: expected the PEM file of the server certificate"))
	}
	if c.Key == "" {
		errs = append(errs, config.Fieldf("key", "missing: expected the PEM file of the private key"))
	}
	if c.RequireClientCert && c.ClientCA == "" {
		errs = append(errs, config.Fieldf("require_client_cert", "needs client_ca: the CAs that client certificates are checked against"))
	}
	switch c.MinVersion {
	case "", "1.2", "1.3":
	default:
		errs = append(errs, config.Fieldf("min_version", "%q: expected 1.2 or 1.3", c.MinVersion))
	}
	return errors.Join(errs...)
}

// Load reads the certificate, key and client CA into a server tls.Config.
func (c *TLSConfig) Load() (*tls.Config, error) {
	fc, err := tlsconf.LoadFileCert(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	// The files are re-read when they change (a renewed certificate is
	// served from the next handshake on, no restart).
	tc := &tls.Config{GetCertificate: fc.GetCertificate, MinVersion: tls.VersionTLS12}
	if c.MinVersion == "1.3" {
		tc.MinVersion = tls.VersionTLS13
	}
	if c.ClientCA == "" {
		// Handshakes take tc itself, so the watched certificate answers
		// even when a caller puts a certificate into the outer config.
		outer := tc.Clone()
		outer.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return tc, nil }
		return outer, nil
	}
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	if c.RequireClientCert {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	// The client CA bundle is re-read when it changes, as the certificate
	// is (tlsconf.ClientCAs): a CA added or removed applies from the next
	// handshake on, no restart.
	cas, err := tlsconf.WatchClientCAs(tc, c.ClientCA)
	if err != nil {
		return nil, fmt.Errorf("tls: client_ca: %w", err)
	}
	outer := tc.Clone()
	outer.ClientCAs = cas.Pool()
	outer.GetConfigForClient = cas.GetConfigForClient
	return outer, nil
}
