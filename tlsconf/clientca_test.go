package tlsconf

import (
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testpki"
)

// TestClientCARotation: the listener's client_ca (what routes'
// client_cert verifies against) reloads with the certificates, on the
// file watch's check as on Reload: a client of a new CA is refused
// before the bundle changes and accepted after, and a client of the CA
// removed from the bundle is refused from then on.
func TestClientCARotation(t *testing.T) {
	server := testpki.NewCA(t, "server ca")
	oldCA := testpki.NewCA(t, "old client ca")
	newCA := testpki.NewCA(t, "new client ca")
	leaf := server.Issue(t, "gw", "localhost", "127.0.0.1")
	oldClient, newClient := oldCA.Issue(t, "alice"), newCA.Issue(t, "bob")
	bundle := t.TempDir() + "/clients.pem"
	if err := os.WriteFile(bundle, oldCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	certs, err := NewCerts(Server{Cert: leaf.CertFile, Key: leaf.KeyFile, ClientCA: bundle}, []string{"http/1.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listener(inner, certs.TLSConfig(), 5*time.Second, nil)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("k"))
			c.Close()
		}
	}()
	// accepted reports whether the listener took a client presenting
	// cert (sent whatever CAs the server names): in TLS 1.3 a refused
	// certificate shows as the server's alert at the client's first read.
	accepted := func(cert tls.Certificate) bool {
		t.Helper()
		c, err := tls.Dial("tcp", inner.Addr().String(), &tls.Config{RootCAs: server.Pool(), ServerName: "localhost",
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }})
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		n, err := c.Read(b[:])
		return n == 1 && err == nil
	}
	rotate := func(pem []byte, at time.Time) {
		t.Helper()
		if err := os.WriteFile(bundle, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(bundle, at, at); err != nil {
			t.Fatal(err)
		}
	}
	if !accepted(oldClient.TLS) || accepted(newClient.TLS) {
		t.Fatal("before the rotation: want the old CA's client accepted, the new CA's refused")
	}
	// The watch's check (what Watch runs every watch_interval).
	rotate(newCA.CertPEM, time.Now().Add(2*time.Second))
	certs.reloadIfChanged()
	if accepted(oldClient.TLS) || !accepted(newClient.TLS) {
		t.Fatal("after the rotation seen by the watch: want the old CA's client refused, the new CA's accepted")
	}
	// Reload (POST /admin/reload, SIGHUP) reads the file too.
	rotate(oldCA.CertPEM, time.Now().Add(4*time.Second))
	if err := certs.Reload(nil); err != nil {
		t.Fatal(err)
	}
	if !accepted(oldClient.TLS) || accepted(newClient.TLS) {
		t.Fatal("after rotating back by Reload: want the old CA's client accepted, the new CA's refused")
	}
	// A bundle that stops loading keeps the running one.
	rotate([]byte("no certificate here\n"), time.Now().Add(6*time.Second))
	certs.reloadIfChanged()
	if !accepted(oldClient.TLS) || accepted(newClient.TLS) {
		t.Fatal("after a broken bundle: want the running bundle kept")
	}
}
