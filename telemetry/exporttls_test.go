package telemetry

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/testpki"
)

// TestOTLPClientCertificateReload exports to a collector that requires a
// client certificate (mTLS), with the certificate named by the standard
// OTEL_EXPORTER_OTLP_* variables, then replaces the certificate files:
// the exporter's next connection presents the new certificate, without
// a restart. (The SDK alone would read the files once.)
func TestOTLPClientCertificateReload(t *testing.T) {
	ca := testpki.NewCA(t, "collector CA")
	first, second := ca.Issue(t, "rides"), ca.Issue(t, "rides-renewed")
	srvLeaf := ca.Issue(t, "collector", "127.0.0.1")
	var mu sync.Mutex
	var seen []string
	col := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	col.TLS = &tls.Config{Certificates: []tls.Certificate{srvLeaf.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	col.Config.SetKeepAlivesEnabled(false) // every export a new connection (handshake)
	col.StartTLS()
	t.Cleanup(col.Close)

	dir := t.TempDir()
	certFile, keyFile := dir+"/client.crt", dir+"/client.key"
	install := func(l *testpki.Leaf, at time.Time) {
		for src, dst := range map[string]string{l.CertFile: certFile, l.KeyFile: keyFile} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_ = os.Chtimes(dst, at, at)
		}
	}
	install(first, time.Now())
	tr, err := Setup(context.Background(), Config{}, "rides", env(map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":    col.URL + "/v1/traces",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL":    "http/protobuf",
		"OTEL_EXPORTER_OTLP_CERTIFICATE":        ca.File,
		"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": certFile,
		"OTEL_EXPORTER_OTLP_CLIENT_KEY":         keyFile,
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return ""
		}
		return seen[len(seen)-1]
	}
	export := func() {
		span(t, tr, "GET /x", false, 0)
		_ = tr.Provider.ForceFlush(context.Background())
	}
	export()
	if got := last(); got != "rides" {
		t.Fatalf("the collector saw client certificate %q, want rides (the OTEL_EXPORTER_OTLP_CLIENT_* pair)", got)
	}
	install(second, time.Now().Add(2*time.Second))
	deadline := time.Now().Add(20 * time.Second)
	for last() != "rides-renewed" {
		if time.Now().After(deadline) {
			t.Fatalf("20s after the renewal the collector still sees %q: the client certificate was not reloaded", last())
		}
		time.Sleep(100 * time.Millisecond)
		export()
	}
}

func TestOTLPClientCertificateHalf(t *testing.T) {
	_, err := Setup(context.Background(), Config{}, "rides", env(map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":    "https://127.0.0.1:1/v1/traces",
		"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/nonexistent.crt",
	}))
	if err == nil {
		t.Fatal("a client certificate without its key: no error")
	}
}
