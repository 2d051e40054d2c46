package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLocalCACreateReuseRenew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ca := &LocalCA{Dir: dir, Now: clock}
	if err := ca.Open(); err != nil {
		t.Fatal(err)
	}
	if !ca.Created {
		t.Fatal("first Open did not create the CA")
	}
	for _, f := range []string{"ca.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, err %v: want 0600", f, st.Mode().Perm(), err)
		}
	}
	l, err := ca.Leaf("payments")
	if err != nil || !l.Issued {
		t.Fatalf("first leaf: %+v %v", l, err)
	}
	if st, _ := os.Stat(l.Key); st.Mode().Perm() != 0o600 {
		t.Fatalf("leaf key mode %v, want 0600", st.Mode().Perm())
	}
	c := readCert(t, l.Cert)
	if c.Subject.CommonName != "payments" || len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://switchyard.local/payments" {
		t.Fatalf("identity: CN %q URIs %v", c.Subject.CommonName, c.URIs)
	}
	if len(c.IPAddresses) == 0 || !c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || c.DNSNames[1] != "localhost" {
		t.Fatalf("SANs: %v %v", c.IPAddresses, c.DNSNames)
	}
	caCert := readCert(t, ca.CACert())
	if err := c.CheckSignatureFrom(caCert); err != nil {
		t.Fatal(err)
	}

	// A second start reuses the CA and the leaf.
	ca2 := &LocalCA{Dir: dir, Now: clock}
	if err := ca2.Open(); err != nil || ca2.Created {
		t.Fatalf("reopen: created %v err %v", ca2.Created, err)
	}
	l2, err := ca2.Leaf("payments")
	if err != nil || l2.Issued {
		t.Fatalf("reuse: %+v %v", l2, err)
	}
	if readCert(t, l2.Cert).SerialNumber.Cmp(c.SerialNumber) != 0 {
		t.Fatal("leaf was reissued")
	}

	// Within RenewBefore of expiry the leaf is issued anew.
	now = c.NotAfter.Add(-DefaultRenewBefore + time.Hour)
	l3, err := ca2.Leaf("payments")
	if err != nil || !l3.Issued {
		t.Fatalf("renewal: %+v %v", l3, err)
	}
	if c3 := readCert(t, l3.Cert); !c3.NotAfter.After(c.NotAfter) {
		t.Fatalf("renewed leaf expires %v, not after the old %v", c3.NotAfter, c.NotAfter)
	}

	// A leaf of another CA in the directory is replaced.
	other := &LocalCA{Dir: t.TempDir(), Now: clock}
	if err := other.Open(); err != nil {
		t.Fatal(err)
	}
	ol, _ := other.Leaf("payments")
	for _, p := range [][2]string{{ol.Cert, l3.Cert}, {ol.Key, l3.Key}} {
		b, _ := os.ReadFile(p[0])
		os.WriteFile(p[1], b, 0o600)
	}
	l4, err := ca2.Leaf("payments")
	if err != nil || !l4.Issued {
		t.Fatalf("foreign leaf kept: %+v %v", l4, err)
	}
}

func TestLocalCAKeyPermsAndHalfState(t *testing.T) {
	dir := t.TempDir()
	ca := &LocalCA{Dir: dir}
	if err := ca.Open(); err != nil {
		t.Fatal(err)
	}
	l, _ := ca.Leaf("broker")
	os.Chmod(l.Key, 0o644)
	if _, err := ca.Leaf("broker"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable leaf key: %v", err)
	}
	os.Chmod(filepath.Join(dir, "ca.key"), 0o640)
	if err := (&LocalCA{Dir: dir}).Open(); err == nil || !strings.Contains(err.Error(), "ca.key") {
		t.Fatalf("group-readable CA key: %v", err)
	}
	os.Remove(filepath.Join(dir, "ca.key"))
	if err := (&LocalCA{Dir: dir}).Open(); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("CA without key: %v", err)
	}
	if _, err := (&LocalCA{Dir: t.TempDir()}).Leaf("x"); err == nil {
		t.Fatal("Leaf before Open")
	}
	ca2 := &LocalCA{Dir: t.TempDir()}
	ca2.Open()
	for _, bad := range []string{"", "../x", "A", "a/b", strings.Repeat("a", 70)} {
		if _, err := ca2.Leaf(bad); err == nil {
			t.Errorf("leaf name %q accepted", bad)
		}
	}
}

func TestServerConfigIdentities(t *testing.T) {
	ca := &LocalCA{Dir: t.TempDir()}
	if err := ca.Open(); err != nil {
		t.Fatal(err)
	}
	srvLeaf, _ := ca.Leaf("cardprocessor")
	scfg, err := ServerConfig(ca.CACert(), srvLeaf.Cert, srvLeaf.Key, func(n string) bool { return n == "payments" })
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(PeerName(r.TLS)))
	}))
	srv.TLS = scfg
	srv.StartTLS()
	defer srv.Close()
	get := func(cfg *tls.Config) (string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b := make([]byte, 64)
		n, _ := resp.Body.Read(b)
		return string(b[:n]), nil
	}
	for _, name := range []string{"payments", "notifications"} {
		l, _ := ca.Leaf(name)
		cfg, err := ClientConfig(ca.CACert(), l.Cert, l.Key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := get(ExpectServer(cfg, "cardprocessor"))
		if name == "payments" && (err != nil || got != "payments") {
			t.Fatalf("payments: %q %v", got, err)
		}
		if name == "notifications" && err == nil {
			t.Fatal("notifications' certificate was let in")
		}
	}
	// No client certificate, and a certificate of another CA: refused.
	noCert, _ := ClientConfig(ca.CACert(), "", "")
	if _, err := get(noCert); err == nil {
		t.Fatal("no client certificate was let in")
	}
	other := &LocalCA{Dir: t.TempDir()}
	other.Open()
	ol, _ := other.Leaf("payments")
	foreign, _ := ClientConfig(ca.CACert(), ol.Cert, ol.Key)
	if _, err := get(foreign); err == nil {
		t.Fatal("another CA's certificate was let in")
	}
	// The client refuses a server whose name is not the expected one.
	pl, _ := ca.Leaf("payments")
	pcfg, _ := ClientConfig(ca.CACert(), pl.Cert, pl.Key)
	if _, err := get(ExpectServer(pcfg, "rides")); err == nil || !strings.Contains(err.Error(), "expected \"rides\"") {
		t.Fatalf("wrong server identity: %v", err)
	}
}
