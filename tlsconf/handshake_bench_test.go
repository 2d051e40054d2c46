package tlsconf

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/switchyard/switchyard/internal/testpki"
)

// BenchmarkListenerHandshake is the gateway's TLS accept path: a full
// TLS 1.3 handshake (ECDSA P-256 certificate, X25519) through Listener
// with a Certs config (SNI pick, GetConfigForClient), the client on
// loopback in the same process. Allocations per handshake are the
// number to compare (both sides counted; the client's are constant).
// CPU profile: go test -run X -bench ListenerHandshake -cpuprofile.
func BenchmarkListenerHandshake(b *testing.B) {
	for _, v := range []struct {
		name string
		ver  uint16
	}{{"tls13", tls.VersionTLS13}, {"tls12", tls.VersionTLS12}} {
		b.Run(v.name, func(b *testing.B) {
			ca := testpki.NewCA(b, "bench CA")
			leaf := ca.Issue(b, "localhost", "localhost", "127.0.0.1")
			certs, err := NewCerts(Server{Cert: leaf.CertFile, Key: leaf.KeyFile}, []string{"http/1.1"}, nil)
			if err != nil {
				b.Fatal(err)
			}
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ln := Listener(inner, certs.TLSConfig(), 0, nil)
			defer ln.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", MinVersion: v.ver, MaxVersion: v.ver,
				CurvePreferences: []tls.CurveID{tls.X25519}, NextProtos: []string{"http/1.1"},
				ClientSessionCache: nil}
			addr := inner.Addr().String()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c, err := tls.Dial("tcp", addr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				var one [1]byte
				_, _ = c.Read(one[:]) // until the server closes: its side is done
				c.Close()
			}
			b.StopTimer()
			ln.Close()
			<-done
		})
	}
}
