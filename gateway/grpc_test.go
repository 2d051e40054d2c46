package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/switchyard/switchyard/internal/testpki"
)

// The test gRPC service is written by hand (no protoc): a grpc.ServiceDesc
// whose messages are protobuf's wrapperspb.StringValue, which the default
// proto codec marshals like any generated message.
//
//	service Echo {
//	  rpc Unary(StringValue) returns (StringValue);          // "slow": waits for its deadline; "fail": InvalidArgument
//	  rpc Count(StringValue) returns (stream StringValue);   // N messages; "hold": one, then waits for cancellation
//	  rpc Chat(stream StringValue) returns (stream StringValue);  // echoes each message; metadata x-header-first: sends its header at once
//	}
const echoService = "switchyard.test.Echo"

type echoServer struct {
	mu        sync.Mutex
	deadlines []time.Duration // time left at the start of each "slow" call
	cancelled chan error      // ctx error of a "hold" stream when it ended
}

func (e *echoServer) unary(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-echo-trailer", "t-"+in.Value))
	switch in.Value {
	case "fail":
		return nil, grpcstatus.Error(codes.InvalidArgument, "bad input: ünïcode\nand a newline")
	case "slow":
		dl, ok := ctx.Deadline()
		left := time.Duration(-1)
		if ok {
			left = time.Until(dl)
		}
		e.mu.Lock()
		e.deadlines = append(e.deadlines, left)
		e.mu.Unlock()
		<-ctx.Done()
		return nil, grpcstatus.FromContextError(ctx.Err()).Err()
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-seen-cert", strings.Join(md.Get("x-forwarded-client-cert"), "|")))
	}
	return wrapperspb.String("echo:" + in.Value), nil
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Unary", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		return srv.(*echoServer).unary(ctx, in)
	}}},
	Streams: []grpc.StreamDesc{
		{StreamName: "Count", ServerStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			if in.Value == "hold" {
				if err := stream.SendMsg(wrapperspb.String("held")); err != nil {
					return err
				}
				<-stream.Context().Done()
				srv.(*echoServer).cancelled <- stream.Context().Err()
				return stream.Context().Err()
			}
			n, _ := strconv.Atoi(in.Value)
			for i := range n {
				if err := stream.SendMsg(wrapperspb.String(strconv.Itoa(i))); err != nil {
					return err
				}
			}
			stream.SetTrailer(metadata.Pairs("x-count", strconv.Itoa(n)))
			return nil
		}},
		{StreamName: "Chat", ServerStreams: true, ClientStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
			if md, _ := metadata.FromIncomingContext(stream.Context()); len(md.Get("x-header-first")) > 0 {
				// The response header goes out before any message is read.
				if err := stream.SendHeader(metadata.Pairs("x-chat-header", "early")); err != nil {
					return err
				}
			}
			for {
				in := new(wrapperspb.StringValue)
				err := stream.RecvMsg(in)
				if errors.Is(err, io.EOF) {
					stream.SetTrailer(metadata.Pairs("x-chat", "done"))
					return nil
				}
				if err != nil {
					return err
				}
				if err := stream.SendMsg(wrapperspb.String("chat:" + in.Value)); err != nil {
					return err
				}
			}
		}},
	},
}

// startEcho serves the echo service on loopback: cleartext HTTP/2 (h2c,
// as grpc-go serves without credentials) or TLS with creds.
func startEcho(t testing.TB, creds credentials.TransportCredentials) (*echoServer, string) {
	e, addr, _ := startEchoServer(t, creds)
	return e, addr
}

func startEchoServer(t testing.TB, creds credentials.TransportCredentials) (*echoServer, string, *grpc.Server) {
	t.Helper()
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	e := &echoServer{cancelled: make(chan error, 4)}
	s.RegisterService(&echoDesc, e)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return e, ln.Addr().String(), s
}

func dialGRPC(t testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// grpcCalls runs every kind of call through the gateway at cc and checks
// what the client sees.
func grpcCalls(t *testing.T, cc *grpc.ClientConn, echo *echoServer) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("unary with header and trailer", func(t *testing.T) {
		out := new(wrapperspb.StringValue)
		var header, trailer metadata.MD
		if err := cc.Invoke(ctx, "/"+echoService+"/Unary", wrapperspb.String("hi"), out, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
			t.Fatal(err)
		}
		if out.Value != "echo:hi" || fmt.Sprint(trailer.Get("x-echo-trailer")) != "[t-hi]" {
			t.Errorf("got %q, trailer %v", out.Value, trailer)
		}
	})
	t.Run("error status and message pass through", func(t *testing.T) {
		err := cc.Invoke(ctx, "/"+echoService+"/Unary", wrapperspb.String("fail"), new(wrapperspb.StringValue))
		if st := grpcstatus.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "bad input: ünïcode\nand a newline" {
			t.Errorf("got %v %q, want InvalidArgument with the server's message", st.Code(), st.Message())
		}
	})
	t.Run("server streaming with trailer", func(t *testing.T) {
		s, err := cc.NewStream(ctx, &echoDesc.Streams[0], "/"+echoService+"/Count")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMsg(wrapperspb.String("5")); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseSend()
		var got []string
		for {
			m := new(wrapperspb.StringValue)
			if err := s.RecvMsg(m); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.Value)
		}
		if strings.Join(got, ",") != "0,1,2,3,4" || fmt.Sprint(s.Trailer().Get("x-count")) != "[5]" {
			t.Errorf("got %v, trailer %v", got, s.Trailer())
		}
	})
	t.Run("bidi streaming: each answer before the next message", func(t *testing.T) {
		s, err := cc.NewStream(ctx, &echoDesc.Streams[1], "/"+echoService+"/Chat")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			// The next message is sent only after the answer to this one
			// came back: a proxy that buffered the request body would hang.
			if err := s.SendMsg(wrapperspb.String(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
			m := new(wrapperspb.StringValue)
			if err := s.RecvMsg(m); err != nil {
				t.Fatal(err)
			}
			if m.Value != "chat:"+strconv.Itoa(i) {
				t.Fatalf("got %q", m.Value)
			}
		}
		_ = s.CloseSend()
		if err := s.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
			t.Fatalf("end of stream: %v", err)
		}
		if fmt.Sprint(s.Trailer().Get("x-chat")) != "[done]" {
			t.Errorf("trailer %v", s.Trailer())
		}
	})
	t.Run("client deadline reaches the server", func(t *testing.T) {
		dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer dcancel()
		err := cc.Invoke(dctx, "/"+echoService+"/Unary", wrapperspb.String("slow"), new(wrapperspb.StringValue))
		if grpcstatus.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("got %v, want DeadlineExceeded", err)
		}
		echo.mu.Lock()
		left := echo.deadlines[len(echo.deadlines)-1]
		echo.mu.Unlock()
		if left <= 0 || left > 300*time.Millisecond {
			t.Errorf("server saw %v left, want a deadline within the client's 300ms", left)
		}
	})
	t.Run("route timeout bounds a call without deadline", func(t *testing.T) {
		// The route's timeout.response is 2s: the server gets a deadline
		// of at most that, and the client DEADLINE_EXCEEDED.
		err := cc.Invoke(ctx, "/"+echoService+"/Unary", wrapperspb.String("slow"), new(wrapperspb.StringValue))
		if grpcstatus.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("got %v, want DeadlineExceeded", err)
		}
		echo.mu.Lock()
		left := echo.deadlines[len(echo.deadlines)-1]
		echo.mu.Unlock()
		if left <= 0 || left > 2*time.Second {
			t.Errorf("server saw %v left, want a deadline within the route's 2s", left)
		}
	})
	t.Run("client cancel reaches the server", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		s, err := cc.NewStream(cctx, &echoDesc.Streams[0], "/"+echoService+"/Count")
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
		ccancel()
		select {
		case err := <-echo.cancelled:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("server stream ended with %v, want canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the server's stream was not cancelled within 10s of the client's cancel")
		}
	})
}

func TestGRPCThroughH2C(t *testing.T) {
	echo, addr := startEcho(t, nil)
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
h2c: true
access_log: off
upstreams:
  echo:
    protocol: h2c
    timeout: { response: 2s }
    targets: [{ address: %s }]
routes:
  - { match: { path_prefix: /%s/ }, upstream: echo }
`, addr, echoService))
	grpcCalls(t, dialGRPC(t, gw.g.Addr().String(), nil), echo)

	t.Run("an upstream that goes away mid-stream ends the client's stream", func(t *testing.T) {
		echo2, addr2, srv2 := startEchoServer(t, nil)
		gw2 := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
h2c: true
access_log: off
upstreams:
  echo: { protocol: h2c, targets: [{ address: %s }] }
routes:
  - { upstream: echo }
`, addr2))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := dialGRPC(t, gw2.g.Addr().String(), nil).NewStream(ctx, &echoDesc.Streams[0], "/"+echoService+"/Count")
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
		srv2.Stop() // closes the upstream's connections with the stream open
		<-echo2.cancelled
		err = s.RecvMsg(new(wrapperspb.StringValue))
		if err == nil || err == io.EOF || ctx.Err() != nil {
			t.Fatalf("after the upstream went away: %v (context %v), want a stream error", err, ctx.Err())
		}
	})
	t.Run("gateway errors are gRPC statuses", func(t *testing.T) {
		err := dialGRPC(t, gw.g.Addr().String(), nil).Invoke(context.Background(), "/other.Service/M", wrapperspb.String("x"), new(wrapperspb.StringValue))
		if grpcstatus.Code(err) != codes.Unimplemented {
			t.Errorf("no route: %v, want Unimplemented", err)
		}
		// A trailers-only gRPC status with the gateway's code and request
		// id, not an HTTP 404 with a JSON body that grpc-go maps to
		// Unimplemented on its own ("unexpected HTTP status code").
		if msg := grpcstatus.Convert(err).Message(); !strings.Contains(msg, "(no_route) request_id=") {
			t.Errorf("no route: grpc-message %q, want the gateway's code and request id", msg)
		}
		err = dialGRPC(t, gw.g.Addr().String(), nil).Invoke(context.Background(), "/"+echoService+"/../M", wrapperspb.String("x"), new(wrapperspb.StringValue))
		if msg := grpcstatus.Convert(err).Message(); !strings.Contains(msg, "(bad_request) request_id=") {
			t.Errorf("dot segment: %v, want a gRPC status with the gateway's code and request id", err)
		}
	})
}

func TestGRPCThroughTLS(t *testing.T) {
	ca := testpki.NewCA(t, "grpc ca")
	upCert := ca.Issue(t, "echo upstream", "echo.internal")
	gwClient := ca.Issue(t, "gateway", "gateway.internal")
	gwCert := ca.Issue(t, "gateway front", "api.example", "127.0.0.1")
	// The upstream requires the gateway's client certificate.
	echo, addr := startEcho(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{upCert.TLS},
		ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}))
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
tls: { cert: %s, key: %s }
upstreams:
  echo:
    tls: { ca: %s, server_name: echo.internal, cert: %s, key: %s }
    timeout: { response: 2s }
    targets: [{ address: %s }]
routes:
  - { match: { path_prefix: /%s/ }, upstream: echo }
`, gwCert.CertFile, gwCert.KeyFile, ca.File, gwClient.CertFile, gwClient.KeyFile, addr, echoService))
	cc := dialGRPC(t, gw.g.Addr().String(), credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "api.example"}))
	grpcCalls(t, cc, echo)
}

// TestGRPCStreamsEndingUnderLoad: many bidi streams and unary calls
// through the gateway, each ended by the client (cancel) while its body
// may still be read upstream. The body's deadline handling used to touch
// the HTTP/2 stream after the handler had returned, a nil dereference in
// net/http that took the whole gateway down (bench/grpc.sh found it).
// A regression panics this test binary.
func TestGRPCStreamsEndingUnderLoad(t *testing.T) {
	echo, addr := startEcho(t, nil)
	_ = echo
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
h2c: true
access_log: off
upstreams:
  echo: { protocol: h2c, targets: [{ address: %s }] }
routes:
  - { match: { path_prefix: /%s/ }, upstream: echo }
`, addr, echoService))
	cc := dialGRPC(t, gw.g.Addr().String(), nil)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				s, err := cc.NewStream(ctx, &echoDesc.Streams[1], "/"+echoService+"/Chat")
				if err == nil {
					for j := 0; j < 3; j++ {
						if s.SendMsg(wrapperspb.String("m")) != nil || s.RecvMsg(new(wrapperspb.StringValue)) != nil {
							break
						}
					}
				}
				cancel() // mid-stream, body still open
				uctx, ucancel := context.WithCancel(context.Background())
				go func() { time.Sleep(time.Duration(i%3) * time.Millisecond); ucancel() }()
				_ = cc.Invoke(uctx, "/"+echoService+"/Unary", wrapperspb.String("x"), new(wrapperspb.StringValue))
				ucancel()
			}
		}()
	}
	wg.Wait()
	// Still serving.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cc.Invoke(ctx, "/"+echoService+"/Unary", wrapperspb.String("after"), new(wrapperspb.StringValue)); err != nil {
		t.Fatalf("after the load: %v", err)
	}
}

// TestGRPCHeaderBeforeMessages: a server that sends its response header
// and then waits for the client's first message gets the header through
// to the client (the gateway flushes a header when no body is ready: a
// client waiting for it before sending would otherwise wait forever).
func TestGRPCHeaderBeforeMessages(t *testing.T) {
	_, addr := startEcho(t, nil)
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
h2c: true
access_log: off
upstreams:
  echo: { protocol: h2c, targets: [{ address: %s }] }
routes:
  - { match: { path_prefix: /%s/ }, upstream: echo }
`, addr, echoService))
	cc := dialGRPC(t, gw.g.Addr().String(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-header-first", "1")
	s, err := cc.NewStream(ctx, &echoDesc.Streams[1], "/"+echoService+"/Chat")
	if err != nil {
		t.Fatal(err)
	}
	md, err := s.Header() // before sending anything
	if err != nil {
		t.Fatalf("waiting for the response header: %v", err)
	}
	if got := md.Get("x-chat-header"); len(got) != 1 || got[0] != "early" {
		t.Fatalf("response header x-chat-header = %q, want [early]", got)
	}
	if err := s.SendMsg(wrapperspb.String("a")); err != nil {
		t.Fatal(err)
	}
	out := new(wrapperspb.StringValue)
	if err := s.RecvMsg(out); err != nil || out.Value != "chat:a" {
		t.Fatalf("echo = %q, %v; want chat:a", out.Value, err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(out); !errors.Is(err, io.EOF) {
		t.Fatalf("end of the stream: %v, want io.EOF", err)
	}
	if got := s.Trailer().Get("x-chat"); len(got) != 1 || got[0] != "done" {
		t.Fatalf("trailer x-chat = %q, want [done]", got)
	}
}
