package server

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testpki"
)

// TestClientCAReload rotates the broker's client_ca file from CA A to CA
// B and checks that, without a restart or a new Load, the next
// handshakes accept B's client certificates and refuse A's.
func TestClientCAReload(t *testing.T) {
	caA, caB := testpki.NewCA(t, "A"), testpki.NewCA(t, "B")
	srv := caA.Issue(t, "broker", "127.0.0.1")
	cliA, cliB := caA.Issue(t, "alice"), caB.Issue(t, "bob")
	clientCA := t.TempDir() + "/clients.pem"
	if err := os.WriteFile(clientCA, caA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tc, err := (&TLSConfig{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: clientCA, RequireClientCert: true}).Load()
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, tc)
	if !accepted(t, addr, caA, cliA) || accepted(t, addr, caA, cliB) {
		t.Fatal("before the rotation: want A's client accepted and B's refused")
	}
	// Rotate: B's CA only (a later modification time than the first file).
	if err := os.WriteFile(clientCA, caB.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Second)
	_ = os.Chtimes(clientCA, later, later)
	deadline := time.Now().Add(20 * time.Second)
	for !accepted(t, addr, caA, cliB) {
		if time.Now().After(deadline) {
			t.Fatal("B's client still refused 20s after client_ca named B: the bundle was not reloaded")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if accepted(t, addr, caA, cliA) {
		t.Fatal("A's client still accepted after A left client_ca")
	}
	// A bundle that stops loading keeps the running one.
	if err := os.WriteFile(clientCA, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(clientCA, later.Add(time.Second), later.Add(time.Second))
	time.Sleep(1100 * time.Millisecond) // past the once-a-second look at the file
	if !accepted(t, addr, caA, cliB) {
		t.Fatal("a broken client_ca file dropped the running bundle")
	}
}

// serveTLS accepts connections with cfg and writes "ok" on each whose
// handshake succeeded.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, cfg)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() == nil {
					_, _ = tc.Write([]byte("ok"))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// accepted reports whether a client presenting leaf (and trusting ca)
// got through the handshake: with TLS 1.3 the client's Handshake returns
// before the server has checked its certificate, so it reads the
// server's "ok".
func accepted(t *testing.T, addr string, ca *testpki.CA, leaf *testpki.Leaf) bool {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(leaf.CertFile, leaf.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"})
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b) == "ok"
}
