package tlsconf

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFileCertReload: a renewed pair is served from the next look on; a
// half-written pair (new key, old certificate) keeps the previous one
// until the files change again.
func TestFileCertReload(t *testing.T) {
	ca := &LocalCA{Dir: t.TempDir()}
	if err := ca.Open(); err != nil {
		t.Fatal(err)
	}
	l, err := ca.Leaf("svc")
	if err != nil {
		t.Fatal(err)
	}
	fc, err := LoadFileCert(l.Cert, l.Key)
	if err != nil {
		t.Fatal(err)
	}
	fc.w.Check = 0 // look at every call
	first := fc.Certificate()
	if again := fc.Certificate(); again != first {
		t.Fatal("unchanged files: a different certificate")
	}

	// Half-written: the key of a new pair with the old certificate.
	other := &LocalCA{Dir: t.TempDir()}
	if err := other.Open(); err != nil {
		t.Fatal(err)
	}
	ol, err := other.Leaf("svc")
	if err != nil {
		t.Fatal(err)
	}
	oldCert, _ := os.ReadFile(l.Cert)
	newKey, _ := os.ReadFile(ol.Key)
	if err := os.WriteFile(l.Key, newKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := fc.Certificate(); got != first {
		t.Fatal("a mismatched pair replaced the working certificate")
	}
	// The certificate arrives: now the new pair is served.
	newCert, _ := os.ReadFile(ol.Cert)
	if bytes.Equal(newCert, oldCert) {
		t.Fatal("test setup: same certificate")
	}
	if err := os.WriteFile(l.Cert, newCert, 0o644); err != nil {
		t.Fatal(err)
	}
	got := fc.Certificate()
	if got == first || !bytes.Equal(got.Certificate[0], mustDER(t, ol.Cert)) {
		t.Fatal("the completed new pair is not served")
	}
	if _, err := LoadFileCert(filepath.Join(t.TempDir(), "missing.crt"), l.Key); err == nil {
		t.Fatal("missing file: no error")
	}
}

func mustDER(t *testing.T, path string) []byte {
	t.Helper()
	fc, err := LoadFileCert(path, path[:len(path)-len(".crt")]+".key")
	if err != nil {
		t.Fatal(err)
	}
	return fc.Certificate().Certificate[0]
}

// TestLocalCARenewServed: a short-lived leaf renewed by LocalCA (the last
// third of its life) is what a running ServerConfig listener serves next,
// and clients verifying the chain keep connecting past the first leaf's
// expiry, without a restart.
func TestLocalCARenewServed(t *testing.T) {
	ca := &LocalCA{Dir: t.TempDir(), LeafValidity: 9 * time.Second}
	if err := ca.Open(); err != nil {
		t.Fatal(err)
	}
	if ca.RenewBefore != 3*time.Second {
		t.Fatalf("RenewBefore %v: expected a third of 9s", ca.RenewBefore)
	}
	srvLeaf, _ := ca.Leaf("server")
	cliLeaf, _ := ca.Leaf("client")
	scfg, err := ServerConfig(ca.CACert(), srvLeaf.Cert, srvLeaf.Key, func(n string) bool { return n == "client" })
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	ccfg, err := ClientConfig(ca.CACert(), cliLeaf.Cert, cliLeaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	ccfg = ExpectServer(ccfg, "server")
	dial := func() (time.Time, error) {
		c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
		if err != nil {
			return time.Time{}, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].NotAfter, nil
	}
	firstExpiry := srvLeaf.NotAfter
	deadline := time.Now().Add(30 * time.Second)
	renewed := 0
	for time.Now().Before(deadline) && time.Now().Before(firstExpiry.Add(2*time.Second)) {
		// What hitch up's renew loop does.
		for _, n := range []string{"server", "client"} {
			if _, err := ca.Leaf(n); err != nil {
				t.Fatal(err)
			}
		}
		na, err := dial()
		if err != nil {
			t.Fatalf("handshake at %s (first leaf expires %s): %v", time.Now().Format(time.StampMilli), firstExpiry.Format(time.StampMilli), err)
		}
		if na.After(firstExpiry) {
			renewed++
		}
		time.Sleep(100 * time.Millisecond)
	}
	if renewed == 0 {
		t.Fatal("the renewed server leaf was never served")
	}
}
