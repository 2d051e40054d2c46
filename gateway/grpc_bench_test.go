package gateway

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The gRPC benchmarks drive calls through a real gateway (h2c on both
// hops, access log off) to a real grpc-go server, all on loopback in this
// process: CPU profiles (-cpuprofile) and allocation counts cover the
// client, the gateway and the server; the gateway's share is what
// package proxy, net/http's HTTP/2 server and http.Transport show.
//
//	go test -run '^$' -bench GRPC -benchmem -cpuprofile /tmp/grpc.prof ./gateway/
//
// grpcBenchWorkers calls are in flight at once, over grpcBenchConns
// client connections (as bench/grpc.sh's load, scaled down).
const (
	grpcBenchWorkers = 16
	grpcBenchConns   = 2
)

func grpcBenchGateway(b *testing.B) []*grpc.ClientConn {
	_, addr := startEcho(b, nil)
	gw := startGateway(b, fmt.Sprintf(`
listen: 127.0.0.1:0
h2c: true
access_log: off
upstreams:
  echo: { protocol: h2c, targets: [{ address: %s }] }
routes:
  - { match: { path_prefix: /%s/ }, upstream: echo }
`, addr, echoService))
	ccs := make([]*grpc.ClientConn, grpcBenchConns)
	for i := range ccs {
		ccs[i] = dialGRPC(b, gw.g.Addr().String(), nil)
	}
	return ccs
}

// runWorkers splits b.N operations over grpcBenchWorkers goroutines, each
// running op on its client connection until the shared count runs out.
func runWorkers(b *testing.B, ccs []*grpc.ClientConn, op func(cc *grpc.ClientConn, n int) error) {
	var wg sync.WaitGroup
	errs := make(chan error, grpcBenchWorkers)
	b.ResetTimer()
	for w := range grpcBenchWorkers {
		n := b.N / grpcBenchWorkers
		if w < b.N%grpcBenchWorkers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := op(ccs[w%len(ccs)], n); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// coalesceModes runs a benchmark with net/http's HTTP/2 server
// (server.http2: net/http) and the client side's coalesced writes
// (coalescingConn) on and off, and with switchyard's (package
// httpserver/h2, the default), to compare them within one run.
func coalesceModes(b *testing.B, bench func(b *testing.B)) {
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("coalesce=%v", on), func(b *testing.B) {
			old := coalesceServerWrites
			coalesceServerWrites = on
			testHTTP2 = "net/http"
			defer func() { coalesceServerWrites = old; testHTTP2 = "" }()
			bench(b)
		})
	}
	b.Run("h2=switchyard", func(b *testing.B) {
		testHTTP2 = "switchyard"
		defer func() { testHTTP2 = "" }()
		bench(b)
	})
}

func BenchmarkGRPCUnary(b *testing.B) { coalesceModes(b, benchGRPCUnary) }

func BenchmarkGRPCBidi(b *testing.B) { coalesceModes(b, benchGRPCBidi) }

func benchGRPCUnary(b *testing.B) {
	ccs := grpcBenchGateway(b)
	in := wrapperspb.String("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	b.ReportAllocs()
	runWorkers(b, ccs, func(cc *grpc.ClientConn, n int) error {
		out := new(wrapperspb.StringValue)
		for range n {
			if err := cc.Invoke(context.Background(), "/"+echoService+"/Unary", in, out); err != nil {
				return fmt.Errorf("unary call: %w", err)
			}
		}
		return nil
	})
}

// benchGRPCBidi counts messages of bidi streams (Chat), one message in
// flight per stream: sent, echoed, then the next.
func benchGRPCBidi(b *testing.B) {
	ccs := grpcBenchGateway(b)
	in := wrapperspb.String("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	b.ReportAllocs()
	runWorkers(b, ccs, func(cc *grpc.ClientConn, n int) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := cc.NewStream(ctx, &echoDesc.Streams[1], "/"+echoService+"/Chat")
		if err != nil {
			return fmt.Errorf("opening a Chat stream: %w", err)
		}
		out := new(wrapperspb.StringValue)
		for range n {
			if err := s.SendMsg(in); err != nil {
				return fmt.Errorf("sending on the stream: %w", err)
			}
			if err := s.RecvMsg(out); err != nil {
				return fmt.Errorf("receiving on the stream: %w", err)
			}
		}
		return s.CloseSend()
	})
}
