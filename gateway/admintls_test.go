package gateway

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testpki"
)

// TestAdminTLSClientCARotation: the admin listener's client_ca is
// re-read when the file changes, as its certificate is. Before the
// rotation a client whose certificate a new CA signed is refused at the
// handshake; once the file holds the new CA (no reload call, no
// restart) that client is an operator, and a client of the old CA is
// refused. On the old code (the bundle read once at start) the new-CA
// client is never accepted.
func TestAdminTLSClientCARotation(t *testing.T) {
	be := newBackend(t, "a")
	dir := t.TempDir()
	server := testpki.NewCA(t, "admin server ca")
	oldCA := testpki.NewCA(t, "old client ca")
	newCA := testpki.NewCA(t, "new client ca")
	srv := server.Issue(t, "admin", "127.0.0.1")
	oldBot := oldCA.Issue(t, "deploy-bot")
	newBot := newCA.Issue(t, "deploy-bot")
	bundle := filepath.Join(dir, "clients.pem")
	if err := os.WriteFile(bundle, oldCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	r := startGateway(t, fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
admin_tls: { cert: %s, key: %s, client_ca: %s }
admin_auth:
  clients:
    - { name: deploy-bot, role: operator }
upstreams:
  u: { targets: [ { address: %s } ] }
routes:
  - { match: { path_prefix: / }, upstream: u }
`, srv.CertFile, srv.KeyFile, bundle, be.addr()))
	statusURL := strings.Replace(r.admin, "http://", "https://", 1) + "/admin/status"
	// as presents cert whatever CAs the server names (Go's client would
	// otherwise send none that the server does not list), on a new
	// connection each time, so every request is a handshake.
	as := func(cert tls.Certificate) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
			RootCAs:              server.Pool(),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		}}}
	}
	// status is the admin API's answer to c, or 0 when the handshake (or
	// anything before an answer) failed.
	status := func(c *http.Client) (int, error) {
		resp, err := c.Get(statusURL)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := status(as(oldBot.TLS)); code != 200 {
		t.Fatalf("old-CA client before the rotation: %d %v, want 200", code, err)
	}
	if code, _ := status(as(newBot.TLS)); code != 0 {
		t.Fatalf("new-CA client before the rotation: answered %d, want a refused handshake", code)
	}

	// Rotate: the bundle now holds the new CA only. The modification time
	// is moved on so that the change shows even on a coarse clock.
	if err := os.WriteFile(bundle, newCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(bundle, later, later); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, err := status(as(newBot.TLS))
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new-CA client 15s after the rotation: %d %v, want 200 (client_ca not reloaded)", code, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval; the condition is the answer
	}
	if code, _ := status(as(oldBot.TLS)); code != 0 {
		t.Fatalf("old-CA client after the rotation: answered %d, want a refused handshake", code)
	}
}
