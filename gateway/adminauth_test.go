package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAdminAuthConfigErrors: a non-loopback admin address without
// admin_auth is refused, as are client identities without a CA to verify
// them, TLS without an admin address, and unreadable token files — each
// naming file, line and key path.
func TestAdminAuthConfigErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.yaml")
	writeConfig(t, path, `listen: 127.0.0.1:0
admin: 0.0.0.0:9901
upstreams:
  u: { targets: [ { address: 127.0.0.1:1 } ] }
routes:
  - { match: { path_prefix: / }, upstream: u }
`)
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), "gw.yaml:2") || !strings.Contains(err.Error(), "admin: \"0.0.0.0:9901\" is not a loopback address and admin_auth is not set") {
		t.Errorf("non-loopback admin without auth: %v", err)
	}
	writeConfig(t, path, `listen: 127.0.0.1:0
admin: 0.0.0.0:9901
admin_auth:
  tokens:
    - { name: oncall, token: tooshort, role: operator }
  clients:
    - { name: bot, role: operator }
upstreams:
  u: { targets: [ { address: 127.0.0.1:1 } ] }
routes:
  - { match: { path_prefix: / }, upstream: u }
`)
	_, err = LoadConfig(path)
	for _, want := range []string{
		"gw.yaml:5", "admin_auth.tokens[0].token: too short",
		"admin_auth.clients: client certificates need admin_tls with a client_ca",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// --check lists each problem once (the token was reported by the
	// config's validation and again by the files' check).
	if err := Check(path); err == nil || strings.Count(err.Error(), "too short") != 1 {
		t.Errorf("--check: want the short token reported once:\n%v", err)
	}
	writeConfig(t, path, `listen: 127.0.0.1:0
admin_tls: { cert: a.pem }
admin_auth:
  tokens:
    - { name: oncall, token: file:/nonexistent/token, role: operator }
upstreams:
  u: { targets: [ { address: 127.0.0.1:1 } ] }
routes:
  - { match: { path_prefix: / }, upstream: u }
`)
	_, err = New(Options{ConfigPath: path})
	for _, want := range []string{
		"admin_tls: set, but admin is not", "admin_tls: both cert and key are required",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	writeConfig(t, path, `listen: 127.0.0.1:0
admin: 127.0.0.1:0
admin_auth:
  tokens:
    - { name: oncall, token: file:/nonexistent/token, role: operator }
upstreams:
  u: { targets: [ { address: 127.0.0.1:1 } ] }
routes:
  - { match: { path_prefix: / }, upstream: u }
`)
	_, err = New(Options{ConfigPath: path})
	if err == nil || !strings.Contains(err.Error(), "admin_auth.tokens[0].token: reading token file") {
		t.Errorf("unreadable token file: %v", err)
	}
	if err := Check(path); err == nil || !strings.Contains(err.Error(), "admin_auth.tokens[0].token: reading token file") {
		t.Errorf("--check with an unreadable token file: %v", err)
	}
}

// TestAdminAuthOnARealGateway: with admin_auth, the real admin listener
// refuses anonymous callers (401) and read tokens' changes (403), serves
// /healthz to anyone, and a reload rotates the tokens: the old one stops
// working, the new one works, and a reload whose token file is missing is
// refused with the old tokens still in force.
func TestAdminAuthOnARealGateway(t *testing.T) {
	be := newBackend(t, "a")
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "op.token")
	if err := os.WriteFile(tokFile, []byte("first-operator-token-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SY_GW_READ_TOKEN", "reader-token-abcdefghijk")
	cfg := func(tokenSpec string) string {
		return fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
admin_auth:
  tokens:
    - { name: oncall, token: "%s", role: operator }
    - { name: grafana, token: env:SY_GW_READ_TOKEN, role: read }
upstreams:
  u: { targets: [ { address: %s } ] }
routes:
  - { match: { path_prefix: / }, upstream: u }
`, tokenSpec, be.addr())
	}
	r := startGateway(t, cfg("file:"+tokFile))
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	if code, _, _ := get(t, r.admin+"/healthz"); code != 200 {
		t.Errorf("/healthz without credentials: %d", code)
	}
	if code, _, h := get(t, r.admin+"/admin/status"); code != 401 || h.Get("WWW-Authenticate") == "" {
		t.Errorf("anonymous status: %d %v", code, h)
	}
	if code, _, _ := get(t, r.admin+"/metrics"); code != 401 {
		t.Errorf("anonymous metrics: %d", code)
	}
	if code, _, _ := get(t, r.admin+"/admin/traces"); code != 401 {
		t.Errorf("anonymous traces: %d", code)
	}
	if code, _, _ := get(t, r.admin+"/admin/upstreams", bearer("reader-token-abcdefghijk")...); code != 200 {
		t.Errorf("read token reading: %d", code)
	}
	if code, body, _ := do(t, http.MethodPost, r.admin+"/admin/reload", nil, bearer("reader-token-abcdefghijk")...); code != 403 || !strings.Contains(body, "operator") {
		t.Errorf("read token reloading: %d %s", code, body)
	}
	// Rotate: a new token in the file, then reload with the old one.
	if err := os.WriteFile(tokFile, []byte("second-operator-token-456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := do(t, http.MethodPost, r.admin+"/admin/reload", nil, bearer("first-operator-token-123")...); code != 200 {
		t.Fatalf("reload by the operator: %d %s", code, body)
	}
	if code, _, _ := get(t, r.admin+"/admin/status", bearer("first-operator-token-123")...); code != 401 {
		t.Errorf("the rotated-out token still works: %d", code)
	}
	if code, _, _ := get(t, r.admin+"/admin/status", bearer("second-operator-token-456")...); code != 200 {
		t.Errorf("the new token does not work: %d", code)
	}
	// A reload that cannot read its token is refused; the tokens in force stay.
	r.rewrite(t, cfg("file:"+filepath.Join(dir, "missing.token")))
	if code, body, _ := do(t, http.MethodPost, r.admin+"/admin/reload", nil, bearer("second-operator-token-456")...); code != 422 || !strings.Contains(body, "admin_auth.tokens[0].token") {
		t.Errorf("reload with a missing token file: %d %s", code, body)
	}
	if code, _, _ := get(t, r.admin+"/admin/status", bearer("second-operator-token-456")...); code != 200 {
		t.Errorf("after a refused reload the token in force stopped working: %d", code)
	}
	// The proxy itself is untouched by admin auth.
	if code, _, _ := get(t, r.url+"/"); code != 200 {
		t.Errorf("proxied request: %d", code)
	}
}

// TestAdminTLSWithClientCertificates: admin_tls serves the admin API over
// HTTPS and a client certificate listed in admin_auth.clients is an
// operator without any token; a plain-HTTP client gets nothing.
func TestAdminTLSWithClientCertificates(t *testing.T) {
	be := newBackend(t, "a")
	dir := t.TempDir()
	caCert, caKey := adminTestCA(t)
	adminWritePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caCert.Raw)
	srvCert := adminIssue(t, caCert, caKey, "127.0.0.1", true)
	adminWritePEM(t, filepath.Join(dir, "admin.pem"), "CERTIFICATE", srvCert.Certificate[0])
	der, _ := x509.MarshalPKCS8PrivateKey(srvCert.PrivateKey)
	adminWritePEM(t, filepath.Join(dir, "admin.key"), "PRIVATE KEY", der)
	r := startGateway(t, fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
admin_tls: { cert: %[1]s/admin.pem, key: %[1]s/admin.key, client_ca: %[1]s/ca.pem }
admin_auth:
  clients:
    - { name: deploy-bot, role: operator }
upstreams:
  u: { targets: [ { address: %[2]s } ] }
routes:
  - { match: { path_prefix: / }, upstream: u }
`, dir, be.addr()))
	adminURL := strings.Replace(r.admin, "http://", "https://", 1)
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	bot := adminIssue(t, caCert, caKey, "deploy-bot", false)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{bot}}}}
	resp, err := c.Post(adminURL+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("reload with the operator's certificate: %d", resp.StatusCode)
	}
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err = anon.Get(adminURL + "/admin/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("no certificate: %d", resp.StatusCode)
	}
	if resp, err := client.Get(r.admin + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP to the TLS admin listener answered 200")
		}
	}
}

func adminTestCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gateway admin test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// adminIssue makes a leaf: a server certificate for an IP, or a client one.
func adminIssue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = append(tmpl.IPAddresses, []byte{127, 0, 0, 1})
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func adminWritePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
