package gateway

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Tests of the frame-level HTTP/2 upstream path (proxy/h2up.go) that gRPC
// calls to h2c and h2 upstreams take.

// acceptCounter counts the connections it accepts.
type acceptCounter struct {
	net.Listener
	n atomic.Int64
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// floodService streams 32 KiB messages until the client goes away,
// counting those its stream accepted.
const floodService = "switchyard.test.Flood"

type flood struct{ sent atomic.Int64 }

var floodDesc = grpc.ServiceDesc{
	ServiceName: floodService,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{StreamName: "Pour", ServerStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
		in := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(in); err != nil {
			return err
		}
		msg := wrapperspb.String(strings.Repeat("x", 32<<10))
		f := srv.(*flood)
		for range 4096 { // 128 MiB at most
			if err := stream.SendMsg(msg); err != nil {
				return err
			}
			f.sent.Add(1)
		}
		return nil
	}}},
}

// startGRPCUpstream serves echo and flood on a counting listener.
func startGRPCUpstream(t testing.TB) (*echoServer, *flood, *acceptCounter, *grpc.Server) {
	t.Helper()
	s := grpc.NewServer()
	e := &echoServer{cancelled: make(chan error, 4)}
	f := &flood{}
	s.RegisterService(&echoDesc, e)
	s.RegisterService(&floodDesc, f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &acceptCounter{Listener: ln}
	go func() { _ = s.Serve(cl) }()
	t.Cleanup(s.Stop)
	return e, f, cl, s
}

func h2cGateway(t testing.TB, addrs ...string) *running {
	var targets []string
	for _, a := range addrs {
		targets = append(targets, "{ address: "+a+" }")
	}
	return startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
h2c: true
access_log: off
upstreams:
  echo: { protocol: h2c, targets: [%s] }
routes:
  - { upstream: echo }
`, strings.Join(targets, ", ")))
}

// Many concurrent streams from many clients share one upstream connection.
func TestGRPCFrameManyStreamsOneUpstreamConn(t *testing.T) {
	_, _, ln, _ := startGRPCUpstream(t)
	gw := h2cGateway(t, ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for c := range 4 {
		cc := dialGRPC(t, gw.g.Addr().String(), nil)
		for w := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := cc.NewStream(ctx, &echoDesc.Streams[1], "/"+echoService+"/Chat")
				if err != nil {
					errs <- err
					return
				}
				for i := range 5 {
					v := fmt.Sprintf("%d-%d-%d", c, w, i)
					if err := s.SendMsg(wrapperspb.String(v)); err != nil {
						errs <- err
						return
					}
					m := new(wrapperspb.StringValue)
					if err := s.RecvMsg(m); err != nil {
						errs <- err
						return
					}
					if m.Value != "chat:"+v {
						errs <- fmt.Errorf("stream %d-%d got %q, want chat:%s", c, w, m.Value, v)
						return
					}
				}
				_ = s.CloseSend()
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := ln.n.Load(); n != 1 {
		t.Errorf("the upstream accepted %d connections for 200 streams, want 1", n)
	}
}

// A client that does not read a large streamed response holds a bounded
// amount of it in the gateway (flow control, not buffering), and other
// calls on the same upstream connection go on meanwhile.
func TestGRPCFrameSlowReaderIsBounded(t *testing.T) {
	_, fl, ln, _ := startGRPCUpstream(t)
	gw := h2cGateway(t, ln.Addr().String())
	// Fixed, small client windows (no BDP growth): what the client takes
	// without reading is 64 KiB.
	cc, err := grpc.NewClient("passthrough:///"+gw.g.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := cc.NewStream(ctx, &floodDesc.Streams[0], "/"+floodService+"/Pour")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(wrapperspb.String("go")); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseSend()
	// Never read: wait until the server's sends stall (the count stays
	// the same over a second), or it sent everything.
	last := int64(-1)
	for {
		n := fl.sent.Load()
		if n == last || n == 4096 || ctx.Err() != nil {
			break
		}
		last = n
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
	// What the server could hand over: the client's 64 KiB, the
	// gateway's client-side buffers and copy buffer, the upstream
	// stream's 256 KiB window and grpc-go's own write quota. 2 MiB is far
	// below the 4 MiB stream window http.Transport gave each stream.
	if sent := fl.sent.Load() * 32 << 10; sent > 2<<20 {
		t.Fatalf("the server got %d KiB out to a client that reads nothing, want at most 2048 KiB", sent>>10)
	}
	// Another call on the same upstream connection is served meanwhile.
	uctx, ucancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ucancel()
	out := new(wrapperspb.StringValue)
	if err := dialGRPC(t, gw.g.Addr().String(), nil).Invoke(uctx, "/"+echoService+"/Unary", wrapperspb.String("other"), out); err != nil || out.Value != "echo:other" {
		t.Fatalf("a call beside the stalled stream: %q %v", out.Value, err)
	}
	if n := ln.n.Load(); n != 1 {
		t.Errorf("the upstream accepted %d connections, want 1 (the stalled stream must not block the shared connection)", n)
	}
}

// An upstream that dies with a stream open gives the client UNAVAILABLE
// (grpc-status 14), the status a gRPC client retries on.
func TestGRPCFrameUpstreamDeathIsUnavailable(t *testing.T) {
	echo, _, ln, srv := startGRPCUpstream(t)
	gw := h2cGateway(t, ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := dialGRPC(t, gw.g.Addr().String(), nil).NewStream(ctx, &echoDesc.Streams[0], "/"+echoService+"/Count")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(wrapperspb.String("hold")); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseSend()
	if err := s.RecvMsg(new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	<-echo.cancelled
	err = s.RecvMsg(new(wrapperspb.StringValue))
	if grpcstatus.Code(err) != codes.Unavailable {
		t.Fatalf("after the upstream died: %v, want Unavailable", err)
	}
}

// A client's RST_STREAM (cancel) of a bidi stream cancels the upstream's
// stream, and the shared connection serves on.
func TestGRPCFrameClientResetCancelsUpstream(t *testing.T) {
	echo, _, ln, _ := startGRPCUpstream(t)
	gw := h2cGateway(t, ln.Addr().String())
	cc := dialGRPC(t, gw.g.Addr().String(), nil)
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		s, err := cc.NewStream(ctx, &echoDesc.Streams[0], "/"+echoService+"/Count")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMsg(wrapperspb.String("hold")); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseSend()
		if err := s.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case err := <-echo.cancelled:
			if grpcstatus.Code(err) != codes.Canceled && err != context.Canceled {
				t.Errorf("upstream stream ended with %v, want canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the upstream's stream was not cancelled within 10s")
		}
	}
	if n := ln.n.Load(); n != 1 {
		t.Errorf("the upstream accepted %d connections, want 1", n)
	}
}

// Calls are balanced over the targets (one connection each), and a dead
// target's calls fail over by passive health (outlier ejection is the
// route's; here: the target that refuses connections gets none once
// ejected).
func TestGRPCFrameBalancesTargets(t *testing.T) {
	_, _, ln1, _ := startGRPCUpstream(t)
	_, _, ln2, _ := startGRPCUpstream(t)
	gw := h2cGateway(t, ln1.Addr().String(), ln2.Addr().String())
	cc := dialGRPC(t, gw.g.Addr().String(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 20 {
		if err := cc.Invoke(ctx, "/"+echoService+"/Unary", wrapperspb.String(fmt.Sprint(i)), new(wrapperspb.StringValue)); err != nil {
			t.Fatal(err)
		}
	}
	if ln1.n.Load() != 1 || ln2.n.Load() != 1 {
		t.Errorf("connections per target: %d and %d, want one each", ln1.n.Load(), ln2.n.Load())
	}
}
