package up

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/broker/server"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/svc"
	"github.com/switchyard/switchyard/wal"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// The broker config declares exactly hitch.Bindings and is valid for the
// broker.
func TestBrokerConfig(t *testing.T) {
	fc, err := server.ParseFile("broker.yaml", BrokerConfig())
	if err != nil {
		t.Fatalf("broker rejects the generated config: %v\n%s", err, BrokerConfig())
	}
	for topic, queues := range hitch.Bindings {
		tc, ok := fc.Topics[topic]
		if !ok || len(tc.Queues) != len(queues) {
			t.Errorf("topic %s: %+v, want queues %v", topic, tc, queues)
		}
		for _, q := range queues {
			if _, ok := fc.Queues[q]; !ok {
				t.Errorf("queue %s not declared", q)
			}
		}
	}
}

// The gateway config of the whole table is valid (no route hides
// another), every route is where its role says.
func TestGatewayConfig(t *testing.T) {
	o := Options{Data: t.TempDir(), Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Command: []string{"x"}}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	cfg, err := GatewayConfig(o, "http://127.0.0.1:1", "http://127.0.0.1:2/.well-known/jwks.json", filepath.Join(t.TempDir(), "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	ext := map[string]http.Handler{"GET /admin/hitch/processes": http.NotFoundHandler(), "POST /admin/hitch/processes/": faultHandler(nil)}
	if _, err := gateway.New(gateway.Options{Config: cfg, Logger: quiet(), AdminExtensions: ext}); err != nil {
		t.Fatalf("the generated gateway config: %v", err)
	}
	byName := map[string]gateway.Route{}
	for _, r := range cfg.Routes {
		byName[r.Name] = r
	}
	for _, s := range svc.Services() {
		if cfg.Upstreams[s.Name] == nil || cfg.Upstreams[s.Name].Discover != s.Name {
			t.Errorf("upstream %s: %+v", s.Name, cfg.Upstreams[s.Name])
		}
		for _, r := range s.Routes {
			gr := byName[r.Name]
			if gr.Upstream != s.Name || gr.RateLimit == nil {
				t.Errorf("route %s: %+v", r.Name, gr)
			}
			switch r.Role {
			case svc.Public:
				if gr.Auth != 0 || gr.Require != nil {
					t.Errorf("public route %s needs auth", r.Name)
				}
			case svc.AnyRole:
				if gr.Auth != auth.MethodJWT || gr.Require != nil {
					t.Errorf("route %s: %+v", r.Name, gr)
				}
			default:
				if gr.Auth != auth.MethodJWT || gr.Require == nil || len(gr.Require.Scopes) != 1 || gr.Require.Scopes[0] != r.Role {
					t.Errorf("route %s for %s: %+v", r.Name, r.Role, gr)
				}
			}
		}
	}
	// The receipt goes to views, the ride to rides.
	if byName["ride-receipt"].Upstream != hitch.Views || byName["ride-get"].Upstream != hitch.Rides {
		t.Error("receipt and ride routes misplaced")
	}
	bad := o
	bad.Specs = []svc.Spec{{Name: "x", Routes: []svc.Route{{Name: "r", Path: "/r", Role: "admin"}}}}
	if _, err := GatewayConfig(bad, "http://r", "http://j", "off"); err == nil || !strings.Contains(err.Error(), `role "admin"`) {
		t.Errorf("bad role: %v", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{Replicas: 40, Listen: "nope", Postgres: "mysql://x", Redis: "http://x",
		Specs: []svc.Spec{{Name: "a"}, {Name: "a"}, {Name: "Bad Name"}}}
	err := o.defaults()
	for _, want := range []string{"--replicas 40", `--listen "nope"`, "--postgres", "--redis", `"a" listed twice`, `"Bad Name"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("defaults: %v, want %q", err, want)
		}
	}
}

// A crashing child is restarted with growing delays; a running one is
// stopped with SIGTERM when ctx ends.
func TestSupervisor(t *testing.T) {
	p := &process{name: "crash", argv: []string{"/bin/sh", "-c", "echo 'hitch serve: crash-0 ready on 127.0.0.1:1'; exit 3"},
		backoff: Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond, Reset: time.Hour}, log: quiet(), out: io.Discard,
		readyLine: serveReady, ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	select {
	case <-p.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no ready line")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		in := p.info(ctx, http.DefaultClient)
		if in.Restarts >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarts %d after 10s", in.Restarts)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done

	// A long runner: stopped by SIGTERM, reaped.
	p = &process{name: "sleeper", argv: []string{"/bin/sh", "-c", "echo 'hitch serve: sleeper-0 ready on 127.0.0.1:1'; exec sleep 60"},
		backoff: DefaultBackoff, log: quiet(), out: io.Discard, readyLine: serveReady, ready: make(chan struct{})}
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	<-p.ready
	in := p.info(ctx, &http.Client{Timeout: 100 * time.Millisecond})
	if in.PID == 0 || in.Address != "127.0.0.1:1" || in.Health != "down" { // nothing listens on port 1
		t.Fatalf("info %+v", in)
	}
	start := time.Now()
	cancel()
	<-done
	if time.Since(start) > 5*time.Second {
		t.Fatalf("stopping took %v", time.Since(start))
	}
	if err := syscall.Kill(in.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("child %d still exists: %v", in.PID, err)
	}
	if in := p.info(context.Background(), http.DefaultClient); in.Health != "down" || in.PID != 0 {
		t.Fatalf("after the stop: %+v", in)
	}
}

func TestReadyLines(t *testing.T) {
	if a, ok := serveReady("hitch serve: identity-0 ready on 127.0.0.1:555"); !ok || a != "127.0.0.1:555" {
		t.Fatalf("serveReady: %q %v", a, ok)
	}
	if _, ok := serveReady(`{"msg":"hitch serve: ready on x"}`); ok {
		t.Fatal("a log line taken for the ready line")
	}
	h, n, ok := brokerReady("switchyard broker: http=127.0.0.1:1 native=127.0.0.1:2 pprof=off data=/d fsync=batch")
	if !ok || h != "127.0.0.1:1" || n != "127.0.0.1:2" {
		t.Fatalf("brokerReady: %q %q %v", h, n, ok)
	}
	if _, _, ok := brokerReady("switchyard broker: http=127.0.0.1:1 native=off"); ok {
		t.Fatal("a broker without its native listener is not ready for the services")
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second, Reset: 30 * time.Second}
	delay := b.Min
	var waits []time.Duration
	for i := 0; i < 6; i++ { // quick crashes: doubling, capped
		var w time.Duration
		w, delay = b.next(delay, time.Second)
		waits = append(waits, w)
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if waits[i] != want[i]*time.Millisecond {
			t.Fatalf("waits %v, want %v ms", waits, want)
		}
	}
	// Up long enough: back to Min.
	if w, next := b.next(delay, 31*time.Second); w != b.Min || next != 2*b.Min {
		t.Fatalf("after a long run: wait %v next %v", w, next)
	}
}

// A second hitch up on a data directory in use stops at once and says
// why, instead of starting a broker that crash-loops on the first one's
// lock and services that share the first one's databases.
func TestRunRefusesDataInUse(t *testing.T) {
	data := t.TempDir()
	held, err := wal.LockDir(data)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = Run(ctx, Options{Data: data, Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		Command: []string{"/bin/false"}, Out: io.Discard, Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "--data") || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("Run on a locked data directory: %v, want an error naming --data in use", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s to refuse, want at once", took)
	}
}

// A --listen or --admin address already taken is refused before anything
// starts, not after every service is up.
func TestRunRefusesTakenAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	for _, tc := range []struct{ flag, listen, admin string }{
		{"--listen", taken, "127.0.0.1:0"},
		{"--admin", "127.0.0.1:0", taken},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		err := Run(ctx, Options{Data: t.TempDir(), Listen: tc.listen, Admin: tc.admin,
			Command: []string{"/bin/false"}, Out: io.Discard, Logger: quiet()})
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.flag+" "+taken) {
			t.Errorf("%s taken: %v, want an error naming %s %s", tc.flag, err, tc.flag, taken)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s taken: took %s to refuse, want at once", tc.flag, took)
		}
	}
}
