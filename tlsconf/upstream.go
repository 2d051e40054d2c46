package tlsconf

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/switchyard/switchyard/config"
)

// Upstream is the TLS of the gateway's connections to an upstream's
// targets (an upstream's `tls:`). Present means HTTPS to every target,
// verified: the target's certificate must chain to CA (or the system's
// roots) and name ServerName (or the target's host).
type Upstream struct {
	// CA is a PEM bundle of the CAs that sign the targets' certificates.
	// Default: the system's roots.
	CA string `yaml:"ca"`
	// ServerName is sent as SNI and must be named by the target's
	// certificate. Default: the target address's host (an IP address is
	// then checked against the certificate's IP SANs).
	ServerName string `yaml:"server_name"`
	// Cert and Key are the gateway's client certificate chain and key
	// (PEM), for targets that require mutual TLS. Default: none.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// MinVersion is the lowest TLS version used: "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// InsecureSkipVerify turns certificate verification off: anyone on the
	// path can then impersonate the targets. For tests only; the gateway
	// logs a warning for such an upstream at every start and reload.
	// Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Validate checks the settings without reading files.
func (u *Upstream) Validate() error {
	var errs []error
	if (u.Cert == "") != (u.Key == "") {
		errs = append(errs, config.Fieldf("cert", "a client certificate needs both cert and key"))
	}
	if _, err := ParseVersion(u.MinVersion); err != nil {
		errs = append(errs, config.Fieldf("min_version", "%v", err))
	}
	if u.InsecureSkipVerify && (u.CA != "" || u.ServerName != "") {
		errs = append(errs, config.Fieldf("insecure_skip_verify", "verification is off, so ca and server_name would be ignored: remove insecure_skip_verify (or them)"))
	}
	return errors.Join(errs...)
}

// ClientConfig loads the files and returns the TLS client config of
// connections to the upstream's targets. nextProtos is what ALPN offers
// (h2 and http/1.1, or http/1.1 only).
func (u *Upstream) ClientConfig(nextProtos []string) (*tls.Config, error) {
	minV, err := ParseVersion(u.MinVersion)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:         minV,
		CipherSuites:       cipherSuites,
		ServerName:         u.ServerName,
		NextProtos:         nextProtos,
		InsecureSkipVerify: u.InsecureSkipVerify, //nolint:gosec // explicit, validated and logged opt-out
		Renegotiation:      tls.RenegotiateNever,
	}
	if u.CA != "" {
		pool, err := LoadCAs(u.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if u.Cert != "" {
		fc, err := LoadFileCert(u.Cert, u.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.GetClientCertificate = fc.GetClientCertificate // re-read when renewed

	}
	return cfg, nil
}
