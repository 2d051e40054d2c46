package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"

	"golang.org/x/net/http2"
)

// BenchmarkUnary: small POSTs with a trailer answer over one h2c
// connection, 16 in flight, against this server and net/http's (client
// and server in one process: compare the two, not the absolute numbers).
//
//	go test -run '^$' -bench Unary -benchmem ./httpserver/h2/
func BenchmarkUnary(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 256)
		n, _ := io.ReadFull(r.Body, buf[:128])
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write(buf[:n])
		w.Header().Set("Grpc-Status", "0")
	})
	for _, name := range []string{"switchyard", "net/http"} {
		b.Run("server="+name, func(b *testing.B) {
			addr := startNamed(b, name, h)
			client := h2cClient()
			url := "http://" + addr + "/bench.Echo/Unary"
			body := bytes.Repeat([]byte("x"), 128)
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := client.Post(url, "application/grpc", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.Trailer.Get("Grpc-Status") != "0" {
						b.Errorf("trailers %v", res.Trailer)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPingFlood: a client writing PINGs 100 to a write and reading
// the acks, against this server and net/http's; cpu-ns/op is the whole
// process's CPU (getrusage) per PING, client included (the same for
// both): compare the two.
//
//	go test -run '^$' -bench PingFlood -benchtime 200000x ./httpserver/h2/
func BenchmarkPingFlood(b *testing.B) {
	h := http.NotFoundHandler()
	for _, name := range []string{"switchyard", "net/http"} {
		b.Run("server="+name, func(b *testing.B) {
			addr := startNamed(b, name, h)
			r := dialRaw(b, addr)
			var batch bytes.Buffer
			fr := http2.NewFramer(&batch, nil)
			for range 100 {
				_ = fr.WritePing(false, [8]byte{1})
			}
			acks := make(chan error, 1)
			go func() {
				rd := http2.NewFramer(nil, r.c)
				for n := 0; n < b.N; {
					f, err := rd.ReadFrame()
					if err != nil {
						acks <- err
						return
					}
					if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
						n++
					}
				}
				acks <- nil
			}()
			cpu0 := cpuNanos()
			b.ResetTimer()
			for sent := 0; sent < b.N; sent += 100 {
				k := min(100, b.N-sent)
				if _, err := r.c.Write(batch.Bytes()[:k*17]); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-acks; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuNanos()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// startNamed serves h with this package's server ("switchyard") or
// net/http's (h2c), for the benchmarks that compare the two.
func startNamed(b *testing.B, name string, h http.Handler) string {
	if name == "switchyard" {
		return start(b, &Server{Handler: h})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	s.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = s.Serve(ln) }()
	b.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}
