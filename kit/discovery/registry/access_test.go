package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/tlsconf"
)

const (
	paymentsToken = "payments-token-0123456789"
	readerToken   = "reader-token-0123456789ab"
)

func TestAccessTokens(t *testing.T) {
	r := open(t, Config{})
	srv := httptest.NewServer(Protect(Handler(r), Access{Tokens: []TokenGrant{
		{Name: "payments", Token: paymentsToken, Services: []string{"payments"}},
		{Name: "reader", Token: readerToken},
	}}))
	t.Cleanup(srv.Close)
	reg := discovery.Registration{Service: "payments", ID: "p-0", Address: "127.0.0.1:9000", TTL: config.Duration(5e9)}
	ctx := context.Background()

	anon, _ := discovery.NewClient(srv.URL, nil)
	_, err := anon.RegisterOnce(ctx, reg)
	var ae *discovery.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous register: %v, want 401", err)
	}
	if _, err := anon.Service(ctx, "payments", 0, 0); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("anonymous read: %v, want 401", err)
	}
	if code, _ := call(t, "GET", srv.URL+"/healthz", ""); code != 200 {
		t.Fatalf("healthz: %d, want it open", code)
	}
	wrong := anon.WithToken("not-the-token-0123456789")
	if _, err := wrong.RegisterOnce(ctx, reg); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("wrong token: %v, want 401", err)
	}

	pay := anon.WithToken(paymentsToken)
	in, err := pay.RegisterOnce(ctx, reg)
	if err != nil {
		t.Fatalf("payments registering itself: %v", err)
	}
	other := reg
	other.Service, other.ID = "rides", "r-0"
	if _, err := pay.RegisterOnce(ctx, other); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("payments registering rides: %v, want 403", err)
	}
	reader := anon.WithToken(readerToken)
	snap, err := reader.Service(ctx, "payments", 0, 0)
	if err != nil || len(snap.Instances) != 1 {
		t.Fatalf("reader: %+v %v", snap, err)
	}
	if err := reader.Deregister(ctx, "payments", "p-0"); !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("reader deregistering: %v, want 403", err)
	}
	if err := anon.Deregister(ctx, "payments", "p-0"); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("anonymous deregister: %v, want 401", err)
	}
	// An escaped slash does not smuggle a write past the service check.
	req, _ := http.NewRequest("DELETE", srv.URL+"/v1/services/payments%2F..%2Frides/instances/r-0", nil)
	req.Header.Set("Authorization", "Bearer "+paymentsToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("escaped path: %v %v, want 403", resp.StatusCode, err)
	}
	if err := pay.WithLease(in.Lease).Deregister(ctx, "payments", "p-0"); err != nil {
		t.Fatalf("payments deregistering itself: %v", err)
	}
	// A malformed Authorization header is no credential.
	req, _ = http.NewRequest("GET", srv.URL+"/v1/services", nil)
	req.Header.Set("Authorization", "Basic "+paymentsToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("basic auth: %v %v, want 401", resp.StatusCode, err)
	}
}

func TestAccessAnonymousReads(t *testing.T) {
	r := open(t, Config{})
	srv := httptest.NewServer(Protect(Handler(r), Access{AnonymousReads: true,
		Tokens: []TokenGrant{{Name: "all", Token: paymentsToken, Services: []string{"*"}}}}))
	t.Cleanup(srv.Close)
	if code, _ := call(t, "GET", srv.URL+"/v1/services", ""); code != 200 {
		t.Fatalf("anonymous read: %d", code)
	}
	if code, _ := call(t, "PUT", srv.URL+"/v1/services/x/instances/a", `{"address":"127.0.0.1:1","ttl":"5s"}`); code != 401 {
		t.Fatalf("anonymous write: %d", code)
	}
}

func TestAccessValidate(t *testing.T) {
	for _, a := range []Access{{}, {Tokens: []TokenGrant{{Name: "x", Token: "short"}}}, {Tokens: []TokenGrant{{Token: paymentsToken}}}} {
		if err := a.Validate(); err == nil {
			t.Errorf("%+v accepted", a)
		}
	}
}

func TestAccessClientCertificates(t *testing.T) {
	ca := &tlsconf.LocalCA{Dir: t.TempDir()}
	if err := ca.Open(); err != nil {
		t.Fatal(err)
	}
	srvLeaf, _ := ca.Leaf("registry")
	scfg, err := tlsconf.ServerConfig(ca.CACert(), srvLeaf.Cert, srvLeaf.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := open(t, Config{})
	srv := httptest.NewUnstartedServer(Protect(Handler(r), Access{Certs: map[string][]string{"payments": {"payments"}, "gateway": nil}}))
	srv.TLS = scfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client := func(name string) *discovery.Client {
		var cert, key string
		if name != "" {
			l, _ := ca.Leaf(name)
			cert, key = l.Cert, l.Key
		}
		cfg, err := tlsconf.ClientConfig(ca.CACert(), cert, key)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := discovery.NewClient(srv.URL, &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}})
		return c
	}
	ctx := context.Background()
	reg := discovery.Registration{Service: "payments", ID: "p-0", Address: "127.0.0.1:9000", TTL: config.Duration(5e9)}
	var ae *discovery.APIError
	if _, err := client("").RegisterOnce(ctx, reg); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("no certificate: %v, want 401", err)
	}
	if _, err := client("notifications").RegisterOnce(ctx, reg); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("unlisted certificate: %v, want 401", err)
	}
	if _, err := client("payments").RegisterOnce(ctx, reg); err != nil {
		t.Fatalf("payments: %v", err)
	}
	if _, err := client("gateway").RegisterOnce(ctx, reg); !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("read-only certificate writing: %v, want 403", err)
	}
	if snap, err := client("gateway").Service(ctx, "payments", 0, 0); err != nil || len(snap.Instances) != 1 {
		t.Fatalf("gateway reading: %+v %v", snap, err)
	}
	// A certificate of another CA fails the handshake.
	other := &tlsconf.LocalCA{Dir: t.TempDir()}
	other.Open()
	ol, _ := other.Leaf("payments")
	cfg, _ := tlsconf.ClientConfig(ca.CACert(), ol.Cert, ol.Key)
	c, _ := discovery.NewClient(srv.URL, &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}})
	if _, err := c.RegisterOnce(ctx, reg); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("foreign certificate: %v", err)
	}
	_ = tls.VersionTLS12
}
