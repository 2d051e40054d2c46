package tlsconf

import (
	"crypto/tls"
	"testing"

	"github.com/switchyard/switchyard/internal/testpki"
)

// slowPick is the reference: the first certificate whose leaf
// VerifyHostname accepts the name, else the first.
func slowPick(l *loaded, name string) *tls.Certificate {
	if name != "" {
		for _, c := range l.certs {
			if c.Leaf.VerifyHostname(name) == nil {
				return c
			}
		}
	}
	return l.certs[0]
}

func pickSet(t testing.TB) *loaded {
	ca := testpki.NewCA(t, "pick ca")
	var l loaded
	for _, names := range [][]string{
		{"default.example"},
		{"*.apps.example", "Mixed.Example"},
		{"a.apps.example", "api.example", "127.0.0.2"},
		{"*.example", "x.y.example."},
		{"api.example", "b.apps.example"},
	} {
		leaf := ca.Issue(t, names[0], names...)
		c := leaf.TLS
		c.Leaf = leaf.Cert
		l.certs = append(l.certs, &c)
	}
	return &l
}

// TestPickMatchesVerifyHostname: pick chooses what the first
// VerifyHostname match would (order, wildcards one label deep, case,
// trailing dots, IP SANs), and the default otherwise; with one
// certificate, that one.
func TestPickMatchesVerifyHostname(t *testing.T) {
	l := pickSet(t)
	for _, name := range []string{"", "default.example", "DEFAULT.example", "default.example.", "a.apps.example",
		"z.apps.example", "x.z.apps.example", "apps.example", "api.example", "mixed.example", "b.apps.example",
		"q.example", "x.y.example", "127.0.0.2", "127.0.0.3", "nothing", ".", "..", "*.apps.example", ".apps.example"} {
		got, _ := l.pick(&tls.ClientHelloInfo{ServerName: name})
		if want := slowPick(l, name); got != want {
			t.Errorf("SNI %q: picked %q, want %q", name, got.Leaf.Subject.CommonName, want.Leaf.Subject.CommonName)
		}
		one := &loaded{certs: l.certs[1:2]}
		if got, _ := one.pick(&tls.ClientHelloInfo{ServerName: name}); got != l.certs[1] {
			t.Errorf("one certificate, SNI %q: picked another", name)
		}
	}
}

func FuzzPick(f *testing.F) {
	l := pickSet(f)
	for _, s := range []string{"a.apps.example", "API.EXAMPLE.", "x.example", "127.0.0.2", "*.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, _ := l.pick(&tls.ClientHelloInfo{ServerName: name})
		if want := slowPick(l, name); got != want {
			t.Errorf("SNI %q: picked %q, want %q", name, got.Leaf.Subject.CommonName, want.Leaf.Subject.CommonName)
		}
	})
}
