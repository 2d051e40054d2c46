package up

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/tlsconf"
)

func notAfter(t *testing.T, path string) time.Time {
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
	return c.NotAfter
}

// TestSecureRenewsWhileRunning: with short-lived leaves the renew loop
// issues every component's leaf anew before it expires, in place.
func TestSecureRenewsWhileRunning(t *testing.T) {
	sec, err := setupSecure(t.TempDir(), []string{"rides", "payments"}, 6*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]time.Time{}
	for _, n := range sec.names {
		first[n] = notAfter(t, sec.leaves[n].Cert)
	}
	ctx, cancel := context.WithCancel(context.Background())
	renewed := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sec.renew(ctx, func(l tlsconf.Leaf) { renewed <- l.Name }, func(n string, err error) { t.Errorf("renewing %s: %v", n, err) })
	}()
	defer func() { cancel(); <-done }()
	seen := map[string]bool{}
	timeout := time.After(60 * time.Second)
	for len(seen) < len(sec.names) {
		select {
		case n := <-renewed:
			seen[n] = true
		case <-timeout:
			t.Fatalf("renewed within 60s: %v of %v", seen, sec.names)
		}
	}
	for _, n := range sec.names {
		if got := notAfter(t, sec.leaves[n].Cert); !got.After(first[n]) {
			t.Errorf("%s: expiry %s not after the first leaf's %s", n, got, first[n])
		}
	}
}

// TestSecureNATSRefusalSaysWhatToDo: the refusal names both ways out.
func TestSecureNATSRefusalSaysWhatToDo(t *testing.T) {
	o := Options{Secure: true, NATS: "nats://127.0.0.1:4222", Command: []string{"true"}}
	err := o.defaults()
	if err == nil || !strings.Contains(err.Error(), "Drop --nats") || !strings.Contains(err.Error(), "drop --secure") {
		t.Fatalf("err %v", err)
	}
}

// TestBrokerYAMLGatewayReadOnly: hitch up's broker user gets read on
// Hitch's queues and no publish, consume or manage.
func TestBrokerYAMLGatewayReadOnly(t *testing.T) {
	sec, err := setupSecure(t.TempDir(), []string{"rides"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	y := string(sec.brokerYAML([]string{"rides"}))
	i := strings.Index(y, "    gateway:\n")
	if i < 0 {
		t.Fatalf("no gateway user:\n%s", y)
	}
	block := y[i+len("    gateway:\n"):]
	if j := strings.Index(block, "\n    "+"rides:"); j >= 0 {
		block = block[:j]
	}
	if strings.Contains(block, "manage") || strings.Contains(block, "publish") || strings.Contains(block, "consume") ||
		!strings.Contains(block, `read: ["queue:`) {
		t.Fatalf("gateway user:\n%s", block)
	}
}
