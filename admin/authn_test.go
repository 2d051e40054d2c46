package admin

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	opToken   = "operator-token-0123456789"
	readToken = "read-only-token-0123456789"
)

func testAuth(t *testing.T, log *slog.Logger) *Authenticator {
	t.Helper()
	t.Setenv("SY_TEST_OP_TOKEN", opToken)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ro.token"), []byte(readToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator(&AuthConfig{
		Tokens: []Token{
			{Name: "oncall", Token: "env:SY_TEST_OP_TOKEN", Role: RoleOperator},
			{Name: "grafana", Token: "file:" + filepath.Join(dir, "ro.token"), Role: RoleRead},
		},
		Clients: []Client{{Name: "deploy-bot", Role: RoleOperator}, {Name: "viewer.example", Role: RoleRead}},
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAuthRoles: without a credential every admin path but /healthz is
// 401 with a challenge; a read token reads but cannot change anything or
// read profiles (403 naming the role); an operator token does everything;
// Basic credentials carry the token as the password (what a browser
// sends); wrong, empty and malformed credentials are 401; changes are
// audited by caller name and the token never reaches the log.
func TestAuthRoles(t *testing.T) {
	var logBuf bytes.Buffer
	a := testAuth(t, slog.New(slog.NewJSONHandler(&logBuf, nil)))
	var seen Caller
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = CallerOf(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(a.Wrap(inner))
	defer srv.Close()

	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	cases := []struct {
		method, path, authz string
		want                int
	}{
		{"GET", "/healthz", "", 204},
		{"GET", "/admin/status", "", 401},
		{"POST", "/admin/reload", "", 401},
		{"GET", "/admin/status", "Bearer " + readToken, 204},
		{"HEAD", "/admin/status", "Bearer " + readToken, 204},
		{"GET", "/metrics", "Bearer " + readToken, 204},
		{"POST", "/admin/reload", "Bearer " + readToken, 403},
		{"PUT", "/admin/upstreams/u/targets/h:1/weight", "Bearer " + readToken, 403},
		{"GET", "/debug/pprof/heap", "Bearer " + readToken, 403},
		{"POST", "/admin/reload", "Bearer " + opToken, 204},
		{"GET", "/debug/pprof/heap", "bearer " + opToken, 204},
		{"GET", "/admin/status", basic("anyone", readToken), 204},
		{"POST", "/admin/reload", basic("", opToken), 204},
		{"GET", "/admin/status", "Bearer " + readToken + "x", 401},
		{"GET", "/admin/status", "Bearer " + readToken[:len(readToken)-1], 401},
		{"GET", "/admin/status", "Bearer ", 401},
		{"GET", "/admin/status", "Bearer", 401},
		{"GET", "/admin/status", "Token " + opToken, 401},
		{"GET", "/admin/status", "Basic !!!not-base64", 401},
		{"GET", "/admin/status", basic("user-without-password", ""), 401},
		{"GET", "/admin/status", basic(readToken, "nope"), 401},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		if c.authz != "" {
			req.Header.Set("Authorization", c.authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s with %q: status %d, want %d", c.method, c.path, c.authz, resp.StatusCode, c.want)
		}
		if c.want == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s: 401 without a Bearer challenge: %q", c.method, c.path, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// The caller reaches the handler.
	req, _ := http.NewRequest("POST", srv.URL+"/admin/reload", nil)
	req.Header.Set("Authorization", "Bearer "+opToken)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	if seen.Name != "oncall" || seen.Role != RoleOperator || seen.Via != "token" {
		t.Errorf("caller seen by the handler: %+v", seen)
	}
	log := logBuf.String()
	if !strings.Contains(log, `"caller":"oncall"`) || !strings.Contains(log, `"msg":"admin change"`) {
		t.Errorf("no audit line for the operator's change:\n%s", log)
	}
	if strings.Contains(log, opToken) || strings.Contains(log, readToken) {
		t.Errorf("a token reached the log:\n%s", log)
	}
}

// TestAuthConfigErrors: every problem is reported with its key path, and
// secrets that cannot be read or are too weak refuse to start.
func TestAuthConfigErrors(t *testing.T) {
	err := (&AuthConfig{}).Validate()
	if err == nil || !strings.Contains(err.Error(), "no tokens and no clients") {
		t.Errorf("empty block: %v", err)
	}
	err = (&AuthConfig{Tokens: []Token{
		{Name: "a", Token: "short", Role: "read"},
		{Name: "a", Token: "env:", Role: "admin"},
		{Token: "file:", Role: ""},
	}, Clients: []Client{{Role: "root"}}}).Validate()
	for _, want := range []string{
		"tokens[0].token: too short (5 bytes)",
		`tokens[1].name: "a" is used twice`,
		`tokens[1].token: "env:" needs a variable name`,
		`tokens[1].role: unknown role "admin"`,
		"tokens[2].name: missing",
		`tokens[2].token: "file:" needs a path`,
		"tokens[2].role: missing",
		"clients[0].name: missing",
		`clients[0].role: unknown role "root"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	os.Unsetenv("SY_TEST_UNSET_TOKEN")
	_, err = NewAuthenticator(&AuthConfig{Tokens: []Token{
		{Name: "a", Token: "env:SY_TEST_UNSET_TOKEN", Role: "read"},
		{Name: "b", Token: "file:/nonexistent/token", Role: "read"},
		{Name: "c", Token: "same-token-0123456789", Role: "read"},
		{Name: "d", Token: "same-token-0123456789", Role: "operator"},
	}}, nil)
	for _, want := range []string{
		`tokens[0].token: environment variable "SY_TEST_UNSET_TOKEN" is not set`,
		"tokens[1].token: reading token file",
		`tokens[3].token: the same token as "c"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	t.Setenv("SY_TEST_WEAK", "weak token with spaces")
	if _, err := NewAuthenticator(&AuthConfig{Tokens: []Token{{Name: "w", Token: "env:SY_TEST_WEAK", Role: "read"}}}, nil); err == nil ||
		!strings.Contains(err.Error(), "not printable ASCII") {
		t.Errorf("a token with spaces: %v", err)
	}
}

// TestAuthClientCertificates: over a real TLS listener that verifies
// client certificates, a certificate whose CN or DNS name is listed
// authenticates with its role; an unlisted one (valid, same CA) is 401; a
// certificate from another CA fails the handshake.
func TestAuthClientCertificates(t *testing.T) {
	a := testAuth(t, slog.New(slog.DiscardHandler))
	ca, caKey := newCA(t, "admin test CA")
	other, otherKey := newCA(t, "other CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	srv := httptest.NewUnstartedServer(a.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := CallerOf(r.Context())
		w.Write([]byte(c.Name + " " + c.Role + " " + c.Via))
	})))
	srv.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	serverCAs := x509.NewCertPool()
	serverCAs.AddCert(srv.Certificate())

	client := func(cert *tls.Certificate) *http.Client {
		tc := &tls.Config{RootCAs: serverCAs}
		if cert != nil { // sent even when its CA is not one the server asked for
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}
	}
	do := func(c *http.Client, method string) (int, string, error) {
		req, _ := http.NewRequest(method, srv.URL+"/admin/reload", nil)
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String(), nil
	}
	bot := leaf(t, ca, caKey, "deploy-bot", nil)
	if code, body, err := do(client(&bot), "POST"); err != nil || code != 200 || body != "deploy-bot operator client-cert" {
		t.Errorf("listed CN: %d %q %v", code, body, err)
	}
	viewer := leaf(t, ca, caKey, "someone", []string{"viewer.example"})
	if code, _, err := do(client(&viewer), "POST"); err != nil || code != 403 {
		t.Errorf("read-only DNS name posting: %d %v", code, err)
	}
	if code, body, err := do(client(&viewer), "GET"); err != nil || code != 200 || body != "viewer.example read client-cert" {
		t.Errorf("read-only DNS name reading: %d %q %v", code, body, err)
	}
	stranger := leaf(t, ca, caKey, "stranger", nil)
	if code, _, err := do(client(&stranger), "GET"); err != nil || code != 401 {
		t.Errorf("unlisted certificate: %d %v", code, err)
	}
	if code, _, err := do(client(nil), "GET"); err != nil || code != 401 {
		t.Errorf("no certificate: %d %v", code, err)
	}
	forged := leaf(t, other, otherKey, "deploy-bot", nil)
	if code, _, err := do(client(&forged), "GET"); err == nil {
		t.Errorf("a certificate from another CA named deploy-bot was accepted: %d", code)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9901": true, "127.9.9.9:1": true, "[::1]:9901": true, "localhost:9901": true, "LOCALHOST:1": true,
		":9901": false, "0.0.0.0:9901": false, "[::]:9901": false, "10.0.0.1:9901": false, "example.com:9901": false,
		"127.0.0.1": false, "": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// FuzzCredential: any Authorization value parses without panicking, and
// whatever token it yields is what Bearer would carry.
func FuzzCredential(f *testing.F) {
	for _, s := range []string{"Bearer abc", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p")), "Basic", "bearer  x ", "Basic Og==", "\x00 \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := credential(h)
		if ok && tok == "" {
			t.Fatalf("%q: ok with an empty token", h)
		}
	})
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, dns []string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestCrossOriginRefused: a web page the operator visits could POST to
// the admin address (a form needs no CORS preflight): with admin_auth the
// browser adds the Basic credentials or client certificate it holds for
// that origin, without admin_auth (loopback) nothing is needed. Such a
// request drained and reloaded. Changes a browser marks as cross-origin
// are refused with 403 before authentication; same-origin pages, GETs
// and clients that send neither header (curl, the CLI) are unaffected.
func TestCrossOriginRefused(t *testing.T) {
	a := testAuth(t, slog.New(slog.DiscardHandler))
	var calls int
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusNoContent)
	})
	for _, c := range []struct {
		name string
		auth *Authenticator
	}{{"admin_auth", a}, {"open (loopback, no admin_auth)", nil}} {
		srv := httptest.NewServer(c.auth.Wrap(inner))
		host := strings.TrimPrefix(srv.URL, "http://")
		calls = 0
		for _, tc := range []struct {
			method string
			hdr    []string
			want   int
		}{
			{"POST", []string{"Origin", "https://evil.example", "Content-Type", "application/x-www-form-urlencoded"}, 403},
			{"POST", []string{"Sec-Fetch-Site", "cross-site"}, 403},
			{"DELETE", []string{"Sec-Fetch-Site", "same-site", "Origin", "http://other.localhost"}, 403},
			{"PUT", []string{"Origin", "null"}, 403},
			{"POST", []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://" + host}, 204},
			{"POST", []string{"Origin", "http://" + host}, 204},
			{"POST", nil, 204},
			{"GET", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, 204},
		} {
			req, _ := http.NewRequest(tc.method, srv.URL+"/admin/upstreams/u/targets/t/drain", strings.NewReader("a=b"))
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("x:"+opToken)))
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: %s with %v: %d, want %d: %s", c.name, tc.method, tc.hdr, resp.StatusCode, tc.want, body)
			}
			if tc.want == 403 && !strings.Contains(string(body), `"cross_origin"`) {
				t.Errorf("%s: refusal body %s", c.name, body)
			}
		}
		if calls != 4 {
			t.Errorf("%s: %d requests reached the handler, want the 4 allowed", c.name, calls)
		}
		srv.Close()
	}
}
