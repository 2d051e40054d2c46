package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/switchyard/switchyard/internal/certfile"
)

// FileCertCheck is how often, at most, a FileCert looks at its files
// (one stat of each at a handshake, no more often than this).
const FileCertCheck = certfile.DefaultCheck

// FileCert is a certificate chain and key in PEM files that are re-read
// when they change (modification time or size), so a renewed certificate
// (LocalCA's renewal, a certbot hook, a copy) is used from the next
// handshake on without a restart. When the new files do not load (a
// half-written pair: the key renamed into place, the certificate not
// yet), the previous certificate stays and the files are tried again at
// their next change (internal/certfile). Safe for concurrent use.
type FileCert struct {
	w *certfile.Watched[*tls.Certificate]
}

// LoadFileCert loads the pair; an error names both files.
func LoadFileCert(certFile, keyFile string) (*FileCert, error) {
	w, err := certfile.Watch([]string{certFile, keyFile}, func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading certificate %s / key %s: %w", certFile, keyFile, err)
		}
		return &c, nil
	})
	if err != nil {
		return nil, err
	}
	return &FileCert{w: w}, nil
}

// Certificate returns the current certificate, re-reading the files
// first if they changed since the last look (at most every
// FileCertCheck).
func (f *FileCert) Certificate() *tls.Certificate { return f.w.Get() }

// GetCertificate is for tls.Config.GetCertificate (servers).
func (f *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.Certificate(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate (clients).
func (f *FileCert) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return f.Certificate(), nil
}

// ClientCAs serves a server's client-certificate verification from a CA
// bundle file that is re-read when it changes, the same way FileCert
// re-reads a certificate: GetConfigForClient hands each handshake base
// with ClientCAs set to the current bundle (one tls.Config per bundle
// generation, not one per handshake), so a CA added to or removed from
// the file applies from the next handshake on, without a restart. A
// bundle that stops loading (no PEM in it) keeps the previous one.
type ClientCAs struct {
	w *certfile.Watched[*tls.Config]
}

// WatchClientCAs loads the bundle at path and returns the config source:
// base (not changed; its ClientAuth decides whether a certificate is
// required) with the bundle as its ClientCAs.
func WatchClientCAs(base *tls.Config, path string) (*ClientCAs, error) {
	w, err := certfile.Watch([]string{path}, func() (*tls.Config, error) {
		pool, err := LoadCAs(path)
		if err != nil {
			return nil, err
		}
		c := base.Clone()
		c.ClientCAs = pool
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return &ClientCAs{w: w}, nil
}

// Pool is the current bundle.
func (c *ClientCAs) Pool() *x509.CertPool { return c.w.Get().ClientCAs }

// GetConfigForClient is for tls.Config.GetConfigForClient.
func (c *ClientCAs) GetConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	return c.w.Get(), nil
}
