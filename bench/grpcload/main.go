// Command grpcload is bench/grpc.sh's gRPC backend and load client (ghz
// is not packaged in Debian). The service is written by hand (no protoc),
// its messages protobuf's wrapperspb.BytesValue:
//
//	service bench.Echo {
//	  rpc Unary(BytesValue) returns (BytesValue);              // echoes
//	  rpc Chat(stream BytesValue) returns (stream BytesValue);  // echoes each message
//	}
//
// Serve: grpcload -serve ADDR (h2c). Load: grpcload -mode unary|stream
// -addr ADDR -conns C -concurrency N -duration D -size B: C HTTP/2
// connections, N workers over them; unary workers call back to back,
// stream workers keep one Chat stream each and send a message, wait for
// its echo, repeat. Prints "calls_per_s=X errors=E" (a stream message
// counts as a call).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var desc = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Unary", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.BytesValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		return in, nil
	}}},
	Streams: []grpc.StreamDesc{{StreamName: "Chat", ServerStreams: true, ClientStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
		for {
			in := new(wrapperspb.BytesValue)
			if err := s.RecvMsg(in); err != nil {
				return nil // io.EOF: the client closed its side
			}
			if err := s.SendMsg(in); err != nil {
				return err
			}
		}
	}}},
}

var chatDesc = &grpc.StreamDesc{StreamName: "Chat", ServerStreams: true, ClientStreams: true}

func main() {
	serve := flag.String("serve", "", "serve the echo service (h2c) on this `address`")
	mode := flag.String("mode", "unary", "load: unary or stream")
	addr := flag.String("addr", "", "load: target `host:port` (h2c)")
	conns := flag.Int("conns", 4, "load: HTTP/2 connections")
	conc := flag.Int("concurrency", 32, "load: workers (calls in flight), spread over the connections")
	dur := flag.Duration("duration", 5*time.Second, "load: how long")
	size := flag.Int("size", 128, "load: message payload `bytes`")
	flag.Parse()
	if *serve != "" {
		ln, err := net.Listen("tcp", *serve)
		if err != nil {
			log.Fatal(err)
		}
		s := grpc.NewServer()
		s.RegisterService(&desc, nil)
		log.Fatal(s.Serve(ln))
	}
	if *addr == "" || (*mode != "unary" && *mode != "stream") || *conns < 1 || *conc < 1 {
		fmt.Fprintln(os.Stderr, "grpcload: -serve ADDR, or -addr ADDR -mode unary|stream with -conns and -concurrency at least 1")
		os.Exit(2)
	}
	cc := make([]*grpc.ClientConn, *conns)
	for i := range cc {
		c, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		cc[i] = c
	}
	payload := wrapperspb.Bytes(bytes.Repeat([]byte("x"), *size))
	// Warm up: every connection up and one call through each.
	for _, c := range cc {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.Invoke(ctx, "/bench.Echo/Unary", payload, new(wrapperspb.BytesValue)); err != nil {
			log.Fatalf("warm-up call through %s: %v", *addr, err)
		}
		cancel()
	}
	var calls, errs atomic.Int64
	var firstErr sync.Once
	fail := func(err error) {
		errs.Add(1)
		firstErr.Do(func() { fmt.Fprintln(os.Stderr, "grpcload: first error:", err) })
	}
	// Cancelled at the end, no deadline: a deadline would go out as
	// grpc-timeout and the proxies would end the calls at the same time
	// as the client, counted as errors.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(*dur, cancel)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		c := cc[w%len(cc)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := new(wrapperspb.BytesValue)
			if *mode == "unary" {
				for ctx.Err() == nil {
					if err := c.Invoke(ctx, "/bench.Echo/Unary", payload, out); err != nil {
						if ctx.Err() == nil {
							fail(err)
						}
						continue
					}
					calls.Add(1)
				}
				return
			}
			for ctx.Err() == nil { // a stream per worker; a new one after an error
				s, err := c.NewStream(ctx, chatDesc, "/bench.Echo/Chat")
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					continue
				}
				for ctx.Err() == nil {
					if err := s.SendMsg(payload); err != nil {
						break
					}
					if err := s.RecvMsg(out); err != nil {
						if ctx.Err() == nil {
							fail(err)
						}
						break
					}
					calls.Add(1)
				}
				_ = s.CloseSend()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("calls_per_s=%.0f errors=%d\n", float64(calls.Load())/el, errs.Load())
}
