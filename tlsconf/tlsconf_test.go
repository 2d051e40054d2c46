package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/testpki"
)

// handshake connects to a Certs-served TLS server over a pipe and returns
// the leaf the server presented for serverName.
func served(t *testing.T, c *Certs, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		b, err := ln.Accept()
		if err != nil {
			return
		}
		defer b.Close()
		_ = tls.Server(b, c.TLSConfig()).Handshake()
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cl := tls.Client(a, &tls.Config{ServerName: serverName, RootCAs: roots})
	if err := cl.Handshake(); err != nil {
		return nil, err
	}
	return cl.ConnectionState().PeerCertificates[0], nil
}

func TestSNIPicksCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "sni ca")
	def := ca.Issue(t, "default", "default.example")
	api := ca.Issue(t, "api", "api.example")
	wild := ca.Issue(t, "wild", "*.apps.example")
	c, err := NewCerts(Server{Certificates: []CertKey{
		{def.CertFile, def.KeyFile}, {api.CertFile, api.KeyFile}, {wild.CertFile, wild.KeyFile}}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"api.example": "api", "x.apps.example": "wild", "default.example": "default"} {
		leaf, err := served(t, c, name, ca.Pool())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if leaf.Subject.CommonName != want {
			t.Errorf("SNI %s: got certificate %q, want %q", name, leaf.Subject.CommonName, want)
		}
	}
	// An unknown name gets the default, which does not verify for it.
	if _, err := served(t, c, "other.example", ca.Pool()); err == nil || !strings.Contains(err.Error(), "default.example") {
		t.Errorf("unknown SNI: got %v, want the default certificate (not valid for other.example)", err)
	}
}

func TestReloadKeepsOldOnBrokenFile(t *testing.T) {
	ca := testpki.NewCA(t, "reload ca")
	one := ca.Issue(t, "one", "svc.example")
	two := ca.Issue(t, "two", "svc.example")
	dir := t.TempDir()
	certFile, keyFile := dir+"/cert.pem", dir+"/key.pem"
	copyFile(t, one.CertFile, certFile)
	copyFile(t, one.KeyFile, keyFile)
	c, err := NewCerts(Server{Cert: certFile, Key: keyFile}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		leaf, err := served(t, c, "svc.example", ca.Pool())
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if got := cn(); got != "one" {
		t.Fatalf("got %q", got)
	}
	// A broken key: the reload fails, names the file, and "one" stays.
	if err := os.WriteFile(keyFile, []byte("-----BEGIN EC PRIVATE KEY-----\nnot base64\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	copyFile(t, two.CertFile, certFile)
	c.reloadIfChanged()
	if got := cn(); got != "one" {
		t.Fatalf("after a broken key: serving %q, want the old certificate", got)
	}
	if err := c.Reload(nil); err == nil || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("reload error %v: want one naming %s", err, keyFile)
	}
	// The key is fixed: the watcher's check picks the change up.
	copyFile(t, two.KeyFile, keyFile)
	c.reloadIfChanged()
	if got := cn(); got != "two" {
		t.Fatalf("after the fix: serving %q, want two", got)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	err := (&Server{Cert: "a.pem", MinVersion: "1.0", HandshakeTimeout: -1, Certificates: []CertKey{{Cert: "b.pem"}}}).Validate()
	for _, want := range []string{"both cert and key", `unknown TLS version "1.0"`, "handshake_timeout", "certificates[0].key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v: want %q", err, want)
		}
	}
	if err := (&Server{}).Validate(); err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Errorf("empty: %v", err)
	}
	err = (&Upstream{Cert: "c.pem", InsecureSkipVerify: true, CA: "ca.pem"}).Validate()
	for _, want := range []string{"both cert and key", "insecure_skip_verify"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Upstream.Validate: %v: want %q", err, want)
		}
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	ca := testpki.NewCA(t, "id ca")
	l := ca.Issue(t, `al"ice\`+"\n\u00e9", "alice.example", "spiffe://example.org/alice")
	cc := FromCertificate(l.Cert)
	v := cc.Format()
	if strings.ContainsAny(v, "\r\n\x00") || strings.ContainsFunc(v, func(r rune) bool { return r >= 0x7f }) {
		t.Fatalf("header value %q has bytes a header must not", v)
	}
	got, err := ParseClientCert(v)
	if err != nil {
		t.Fatal(err)
	}
	if got.CN != cc.CN || got.Subject != cc.Subject || got.Hash != cc.Hash || got.DNS[0] != "alice.example" || got.URI[0] != "spiffe://example.org/alice" {
		t.Errorf("round trip: %+v, want %+v", got, cc)
	}
	for _, bad := range []string{"", "Hash=zz", "Hash=" + cc.Hash + ";Evil=\"x\"", "Hash=" + cc.Hash + ";CN=\"a", "Hash=" + cc.Hash + ";CN=\"\\x41\"",
		"Hash=" + cc.Hash + ";CN=\"a\"x", "Hash=" + cc.Hash + ";CN=\"\n\""} {
		if _, err := ParseClientCert(bad); err == nil {
			t.Errorf("ParseClientCert(%q) accepted", bad)
		}
	}
}

// FuzzClientCertHeader: whatever a certificate's names hold, the header
// is a valid field value and parses back to the same identity; and the
// parser never panics on any input.
func FuzzClientCertHeader(f *testing.F) {
	f.Add("alice", "CN=alice,O=x", "a.example", "spiffe://x/y", "Hash=00;CN=\"\\x0a\"")
	f.Add("\"\\\x00\xff", ";=,\"", "", "", "")
	f.Fuzz(func(t *testing.T, cn, subject, dns, uri, raw string) {
		_, _ = ParseClientCert(raw)
		cc := ClientCert{Hash: strings.Repeat("ab", 32), CN: cn, Subject: subject}
		if dns != "" {
			cc.DNS = []string{dns}
		}
		if uri != "" {
			cc.URI = []string{uri}
		}
		v := cc.Format()
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 || c >= 0x7f {
				t.Fatalf("byte %#x in header value %q", c, v)
			}
		}
		got, err := ParseClientCert(v)
		if err != nil {
			t.Fatalf("parse %q: %v", v, err)
		}
		if got.CN != cn || got.Subject != subject || strings.Join(got.DNS, "") != dns || strings.Join(got.URI, "") != uri {
			t.Fatalf("round trip of %q: %+v", v, got)
		}
	})
}

func TestMiddleware(t *testing.T) {
	ca := testpki.NewCA(t, "mw ca")
	leaf := ca.Issue(t, "alice", "alice.example")
	var seen http.Header
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() })
	verified := &tls.ConnectionState{ServerName: "api.example", VerifiedChains: [][]*x509.Certificate{{leaf.Cert, ca.Cert}}}
	for _, tc := range []struct {
		name, mode, host string
		state            *tls.ConnectionState
		grpc             bool
		status           int
		identity         bool
	}{
		{"required without cert", ClientCertRequired, "api.example", &tls.ConnectionState{ServerName: "api.example"}, false, 403, false},
		{"required over plain HTTP", ClientCertRequired, "api.example", nil, false, 403, false},
		{"required with cert", ClientCertRequired, "api.example:8443", verified, false, 200, true},
		{"required, other host on the connection", ClientCertRequired, "admin.example", verified, false, 421, false},
		{"optional without cert", ClientCertOptional, "api.example", nil, false, 200, false},
		{"optional with cert", ClientCertOptional, "api.example", verified, false, 200, true},
		{"gRPC without cert", ClientCertRequired, "api.example", nil, true, 200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen = nil
			r := httptest.NewRequest(http.MethodGet, "https://"+tc.host+"/", nil)
			r.Host, r.TLS = tc.host, tc.state
			if tc.grpc {
				r.Header.Set("Content-Type", "application/grpc")
			}
			w := httptest.NewRecorder()
			Middleware(tc.mode)(next).ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.status, w.Body)
			}
			if tc.grpc && w.Header().Get("Grpc-Status") != "7" {
				t.Errorf("gRPC refusal: grpc-status %q, want 7 (PERMISSION_DENIED)", w.Header().Get("Grpc-Status"))
			}
			if got := seen.Get(HeaderClientCert) != ""; seen != nil && got != tc.identity {
				t.Errorf("identity forwarded: %v, want %v", got, tc.identity)
			}
			if tc.identity {
				cc, err := ParseClientCert(seen.Get(HeaderClientCert))
				if err != nil || cc.CN != "alice" || cc.DNS[0] != "alice.example" {
					t.Errorf("identity %+v, %v", cc, err)
				}
			}
		})
	}
}

var _ = url.Parse
