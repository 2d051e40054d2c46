package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/httpserver/h2"
	"github.com/switchyard/switchyard/upstream"
	"golang.org/x/net/http2"
)

// serveH2 serves h with httpserver/h2 on a loopback listener.
func serveH2(tb testing.TB, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &h2.Server{Handler: h}
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// BenchmarkGRPCUnary: unary gRPC-shaped calls (a 128-byte message each
// way, grpc-status in the trailers) through the proxy, served by
// httpserver/h2, to an h2c pool (the frame-level upstream transport) and
// an httpserver/h2 backend, 16 in flight over one client connection.
// Client, gateway and backend share the process: allocs/op counts all
// three, and so does cpu-ns/op, the process's CPU time (getrusage) per
// call (client and backend are the same before and after a change of the
// gateway's path: compare builds, not the absolute numbers).
//
//	go test -run '^$' -bench GRPCUnary -benchmem ./proxy/
func BenchmarkGRPCUnary(b *testing.B) {
	back := serveH2(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 256)
		n, _ := io.ReadFull(r.Body, buf[:133])
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		_, _ = w.Write(buf[:n])
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("Grpc-Message", "")
	}))
	targets := []*upstream.Target{upstream.NewTarget(back, 0, 1)}
	pol, err := balance.New(balance.Config{}, targets)
	if err != nil {
		b.Fatal(err)
	}
	pool, err := NewPool(PoolConfig{Name: "g", Targets: targets, Policy: pol, Protocol: ProtocolH2C})
	if err != nil {
		b.Fatal(err)
	}
	rt := &Route{Name: "g", Pool: pool}
	ph := New(staticResolver{rt}, Options{})
	ph.Prepare(rt)
	gw := serveH2(b, ph)

	client := &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}, Timeout: 20 * time.Second}
	msg := append([]byte{0, 0, 0, 0, 128}, bytes.Repeat([]byte("x"), 128)...)
	call := func() error {
		req, _ := http.NewRequest("POST", "http://"+gw+"/bench.Echo/Unary", bytes.NewReader(msg))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("Grpc-Timeout", "10S")
		req.Header.Set("User-Agent", "grpc-go/1.70.0")
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.Trailer.Get("Grpc-Status") != "0" {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	if err := call(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := call(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the process's CPU time (user and system), in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
