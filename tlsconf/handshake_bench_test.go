package tlsconf

import (
	"crypto/tls"
	"net"
	"syscall"
	"testing"

	"github.com/switchyard/switchyard/internal/testpki"
)

// BenchmarkListenerHandshake is the gateway's TLS accept path: a full
// TLS 1.3 handshake (ECDSA P-256 certificate, X25519) through Listener
// with a Certs config (SNI pick, GetConfigForClient), the client on
// loopback in the same process. Allocations per handshake are the
// number to compare (both sides counted; the client's are constant).
// CPU profile: go test -run X -bench ListenerHandshake -cpuprofile.
// "spawn" is a new goroutine per handshake (before tls17c), "reuse" the
// handshakers that live on; cpu-ns/op is the process's CPU time (both
// sides) per handshake, which holds on a loaded machine.
func BenchmarkListenerHandshake(b *testing.B) {
	defer func(r bool) { reuseHandshakers = r }(reuseHandshakers)
	for _, v := range []struct {
		name  string
		ver   uint16
		reuse bool
	}{{"tls13/spawn", tls.VersionTLS13, false}, {"tls13/reuse", tls.VersionTLS13, true},
		{"tls12/spawn", tls.VersionTLS12, false}, {"tls12/reuse", tls.VersionTLS12, true}} {
		b.Run(v.name, func(b *testing.B) {
			reuseHandshakers = v.reuse
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
			cpu0 := processCPU()
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
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			ln.Close()
			<-done
		})
	}
}

// processCPU is the process's CPU time so far (user and system), in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
