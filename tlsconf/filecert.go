package tlsconf

import (
	"crypto/tls"
	"fmt"
	"sync"
	"time"
)

// FileCertCheck is how often, at most, a FileCert looks at its files
// (one stat of each at a handshake, no more often than this).
const FileCertCheck = time.Second

// FileCert is a certificate chain and key in PEM files that are re-read
// when they change (modification time or size), so a renewed certificate
// (LocalCA's renewal, a certbot hook, a copy) is used from the next
// handshake on without a restart. When the new files do not load (a
// half-written pair: the key renamed into place, the certificate not
// yet), the previous certificate stays and the files are tried again at
// their next change. Safe for concurrent use.
type FileCert struct {
	certFile, keyFile string
	// Check overrides FileCertCheck (tests).
	check time.Duration

	mu      sync.Mutex
	cur     *tls.Certificate
	stamp   string // of the files cur was loaded from
	failed  string // stamp that last failed to load
	checked time.Time
}

// LoadFileCert loads the pair; an error names both files.
func LoadFileCert(certFile, keyFile string) (*FileCert, error) {
	f := &FileCert{certFile: certFile, keyFile: keyFile, check: FileCertCheck}
	stamp := fileStamp(certFile) + fileStamp(keyFile)
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s / key %s: %w", certFile, keyFile, err)
	}
	f.cur, f.stamp, f.checked = &c, stamp, time.Now()
	return f, nil
}

// Certificate returns the current certificate, re-reading the files
// first if they changed since the last look (at most every
// FileCertCheck).
func (f *FileCert) Certificate() *tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Sub(f.checked) < f.check {
		return f.cur
	}
	f.checked = now
	stamp := fileStamp(f.certFile) + fileStamp(f.keyFile)
	if stamp == f.stamp || stamp == f.failed {
		return f.cur
	}
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		f.failed = stamp // tried again when a file changes again
		return f.cur
	}
	f.cur, f.stamp, f.failed = &c, stamp, ""
	return f.cur
}

// GetCertificate is for tls.Config.GetCertificate (servers).
func (f *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.Certificate(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate (clients).
func (f *FileCert) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return f.Certificate(), nil
}
