package gateway

import (
	"strings"
	"testing"
)

// A reload cannot swap a terminating l4 listener's certificate (the
// listener keeps the one it loaded), so a reload that names another
// certificate or key must say it needs a restart rather than report
// success while still serving the old certificate.
func TestL4ReloadChangingCertificateNeedsRestart(t *testing.T) {
	parse := func(cert string) *Config {
		c, err := ParseConfig([]byte("listen: 127.0.0.1:0\nupstreams: {u: {targets: [{address: 127.0.0.1:1}]}}\nl4: [{listen: 127.0.0.1:0, upstream: u, tls: {cert: "+cert+", key: k.pem}}]\n"), "gw.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := l4RestartOnly(parse("a.pem"), parse("a.pem")); err != nil {
		t.Fatalf("same certificate: %v", err)
	}
	if err := l4RestartOnly(parse("a.pem"), parse("b.pem")); err == nil || !strings.Contains(err.Error(), "l4[0]") {
		t.Fatalf("another certificate: %v, want a restart-needed error for l4[0]", err)
	}
}
