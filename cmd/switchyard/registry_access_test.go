package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/tlsconf"
)

// TestRegistryAccessFlags: `switchyard registry` with HTTPS, token and
// client-certificate grants refuses anonymous and foreign writes and
// allows the granted ones; bad flag combinations are refused with the
// flag named.
func TestRegistryAccessFlags(t *testing.T) {
	dir := t.TempDir()
	ca := &tlsconf.LocalCA{Dir: filepath.Join(dir, "pki")}
	if err := ca.Open(); err != nil {
		t.Fatal(err)
	}
	srv, _ := ca.Leaf("registry")
	pay, _ := ca.Leaf("payments")
	gw, _ := ca.Leaf("gateway")
	writeTok := func(name, tok string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(tok+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	readTok := writeTok("read.token", "read-token-0123456789abcdef", 0o600)
	ridesTok := writeTok("rides.token", "rides-token-0123456789abcdef", 0o600)
	loose := writeTok("loose.token", "loose-token-0123456789abcdef", 0o644)
	short := writeTok("short.token", "short", 0o600)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", srv.Cert}, "--tls-cert and --tls-key go together"},
		{[]string{"--client-ca", ca.CACert()}, "--client-ca needs --tls-cert"},
		{[]string{"--read-cert", "gateway"}, "need --client-ca"},
		{[]string{"--read-token", loose}, "readable by group or others"},
		{[]string{"--read-token", short}, "expected at least 16"},
		{[]string{"--register-token", ridesTok}, "expected SERVICES:VALUE"},
		{[]string{"--register-token", "Bad_Name:" + ridesTok}, `service "Bad_Name"`},
		{[]string{"--anonymous-reads"}, "the registry is open anyway"},
		{[]string{"--tls-cert", srv.Cert, "--tls-key", srv.Key, "--client-ca", ca.CACert(), "--read-cert", "gateway", "--register-cert", "payments:gateway"}, `"gateway" given twice`},
	} {
		var stderr strings.Builder
		err := runRegistry(context.Background(), append([]string{"--data", t.TempDir(), "--listen", "127.0.0.1:0"}, c.args...), io.Discard, &stderr)
		if !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: err %v, stderr %q: want %q", c.args, err, stderr.String(), c.want)
		}
	}

	listen := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuf
	done := make(chan error, 1)
	go func() {
		done <- runRegistry(ctx, []string{"--data", t.TempDir(), "--listen", listen, "--tls-cert", srv.Cert, "--tls-key", srv.Key,
			"--client-ca", ca.CACert(), "--read-token", readTok, "--register-token", "rides:" + ridesTok,
			"--read-cert", "gateway", "--register-cert", "payments:payments"}, io.Discard, &stderr)
	}()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), "registry listening") {
		if time.Now().After(deadline) {
			t.Fatalf("registry not listening within 20s: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	client := func(cert, key string) *http.Client {
		cfg, err := tlsconf.ClientConfig(ca.CACert(), cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	anon, gwc, payc := client("", ""), client(gw.Cert, gw.Key), client(pay.Cert, pay.Key)
	call := func(c *http.Client, method, path, token string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+listen+path, strings.NewReader(`{"address":"127.0.0.1:1","ttl":"1m"}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		name, method, path, token string
		client                    *http.Client
		want                      int
	}{
		{"anonymous read", "GET", "/v1/services", "", anon, 401},
		{"anonymous write", "PUT", "/v1/services/rides/instances/r1", "", anon, 401},
		{"read token reads", "GET", "/v1/services", "read-token-0123456789abcdef", anon, 200},
		{"read token cannot write", "PUT", "/v1/services/rides/instances/r1", "read-token-0123456789abcdef", anon, 403},
		{"wrong token", "GET", "/v1/services", "nope-token-0123456789abcdef", anon, 401},
		{"rides token writes rides", "PUT", "/v1/services/rides/instances/r1", "rides-token-0123456789abcdef", anon, 200},
		{"rides token cannot write payments", "PUT", "/v1/services/payments/instances/p1", "rides-token-0123456789abcdef", anon, 403},
		{"gateway certificate reads", "GET", "/v1/services/rides", "", gwc, 200},
		{"gateway certificate cannot write", "PUT", "/v1/services/rides/instances/r2", "", gwc, 403},
		{"payments certificate writes payments", "PUT", "/v1/services/payments/instances/p1", "", payc, 200},
		{"payments certificate cannot write rides", "DELETE", "/v1/services/rides/instances/r1", "", payc, 403},
		{"health stays open", "GET", "/healthz", "", anon, 200},
	} {
		if got := call(c.client, c.method, c.path, c.token); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + listen + "/v1/services"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200")
		}
	}
}
