package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echoServer echoes every connection's bytes back and counts what it
// received.
func echoServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					got.Add(int64(n))
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), &got
}

func newProxy(t *testing.T) (*Proxy, *atomic.Int64) {
	t.Helper()
	up, got := echoServer(t)
	p, err := Listen(ProxyConfig{Name: "t", Listen: "127.0.0.1:0", Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, got
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// roundTrip sends msg and reads its echo, returning how long it took.
func roundTrip(t *testing.T, c net.Conn, msg []byte) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(c, back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, msg) {
		t.Fatal("echo differs")
	}
	return time.Since(start)
}

func TestForwardsWithoutFaults(t *testing.T) {
	p, _ := newProxy(t)
	c := dial(t, p)
	roundTrip(t, c, []byte("hello"))
	roundTrip(t, c, bytes.Repeat([]byte("x"), 200<<10))
}

// Latency applies to connections already open, from their next chunk,
// and goes when the fault is removed.
func TestLatency(t *testing.T) {
	p, _ := newProxy(t)
	c := dial(t, p)
	roundTrip(t, c, []byte("warm"))
	if err := p.SetFault(Fault{Name: "slow", Kind: Latency, Direction: Downstream, Latency: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if d := roundTrip(t, c, []byte("ping")); d < 300*time.Millisecond {
		t.Fatalf("round trip %s with 300ms of latency", d)
	}
	p.RemoveFault("slow")
	// Without the fault the next round trip is not delayed by it: check
	// the fault list rather than a time.
	if len(p.Faults()) != 0 {
		t.Fatal("fault still listed")
	}
	roundTrip(t, c, []byte("pong"))
}

func TestBandwidth(t *testing.T) {
	p, _ := newProxy(t)
	if err := p.SetFault(Fault{Name: "thin", Kind: Bandwidth, Direction: Upstream, Rate: 256 << 10}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	// 128 KiB at 256 KiB/s cannot arrive in under half a second.
	if d := roundTrip(t, c, bytes.Repeat([]byte("b"), 128<<10)); d < 450*time.Millisecond {
		t.Fatalf("128 KiB through 256 KiB/s in %s", d)
	}
}

// Reset after N bytes: the client gets exactly N bytes of the response,
// then a connection reset.
func TestResetAfterBytes(t *testing.T) {
	p, _ := newProxy(t)
	if err := p.SetFault(Fault{Name: "cut", Kind: Reset, Direction: Downstream, Bytes: 10}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	c.Write([]byte("0123456789abcdefghij"))
	got, err := io.ReadAll(c)
	if string(got) != "0123456789" {
		t.Fatalf("got %q before the reset", got)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("err = %v, want a connection reset", err)
	}
}

func TestResetAtOnce(t *testing.T) {
	p, got := newProxy(t)
	p.SetFault(Fault{Name: "rst", Kind: Reset, Direction: Upstream})
	c, err := net.Dial("tcp", p.Addr())
	if errors.Is(err, syscall.ECONNRESET) {
		return // reset before connect returned
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The reset may reach the client's write or its read first.
	_, werr := c.Write([]byte("x"))
	_, rerr := io.ReadAll(c)
	if !errors.Is(werr, syscall.ECONNRESET) && !errors.Is(rerr, syscall.ECONNRESET) && !errors.Is(werr, syscall.EPIPE) {
		t.Fatalf("write %v, read %v: want a connection reset", werr, rerr)
	}
	if got.Load() != 0 {
		t.Fatal("the upstream received bytes through a reset connection")
	}
}

// Blackhole: the request never reaches the upstream, and the connection
// stays open (the client's read times out rather than failing).
func TestBlackhole(t *testing.T) {
	p, got := newProxy(t)
	p.SetFault(Fault{Name: "bh", Kind: Blackhole, Direction: Upstream})
	c := dial(t, p)
	c.Write([]byte("into the void"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read: %v, want a timeout on an open connection", err)
	}
	if got.Load() != 0 {
		t.Fatalf("upstream received %d bytes through a blackhole", got.Load())
	}
	// Removing it lets the next bytes through.
	p.RemoveFault("bh")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	roundTrip(t, c, []byte("back"))
}

func TestTimeoutCloses(t *testing.T) {
	p, _ := newProxy(t)
	p.SetFault(Fault{Name: "to", Kind: Timeout, Direction: Upstream, Delay: 100 * time.Millisecond})
	c := dial(t, p)
	c.Write([]byte("hello"))
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
		t.Fatalf("read %q, %v: want a clean close with nothing forwarded", b, err)
	}
}

// SlowClose holds the close of the other side: the client sees EOF no
// sooner than the delay after the upstream closed.
func TestSlowClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("bye"))
			c.Close()
		}
	}()
	p, err := Listen(ProxyConfig{Name: "sc", Listen: "127.0.0.1:0", Upstream: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetFault(Fault{Name: "sc", Kind: SlowClose, Direction: Downstream, Delay: 300 * time.Millisecond})
	// From before the dial: the upstream may close (and the proxy's
	// delay start) before dial returns, so a clock started after it can
	// see EOF a little under the delay (CI saw 298.6ms).
	start := time.Now()
	c := dial(t, p)
	b, err := io.ReadAll(c)
	if string(b) != "bye" || err != nil {
		t.Fatalf("%q %v", b, err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("EOF after %s, want at least the 300ms slow close", d)
	}
}

// Toxicity 0.5 applies the fault to about half of the connections, each
// connection either always or never.
func TestToxicity(t *testing.T) {
	p, _ := newProxy(t)
	p.SetFault(Fault{Name: "half", Kind: Reset, Direction: Upstream, Toxicity: 0.5})
	reset := 0
	const n = 200
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", p.Addr())
		if errors.Is(err, syscall.ECONNRESET) { // reset before connect returned
			reset++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("x"))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			reset++
		}
		c.Close()
	}
	if reset < n*30/100 || reset > n*70/100 {
		t.Fatalf("%d of %d connections reset with toxicity 0.5", reset, n)
	}
}

func TestDisableCutsConnections(t *testing.T) {
	p, _ := newProxy(t)
	c := dial(t, p)
	roundTrip(t, c, []byte("a"))
	p.SetEnabled(false)
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("open connection after disable: %v", err)
	}
	c2 := dial(t, p)
	c2.Write([]byte("b"))
	if b, _ := io.ReadAll(c2); len(b) != 0 {
		t.Fatalf("a disabled proxy forwarded %q", b)
	}
	p.SetEnabled(true)
	roundTrip(t, dial(t, p), []byte("c"))
}

func TestFaultValidation(t *testing.T) {
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Fault{Name: "a", Kind: "lag", Direction: Upstream}, `type "lag"`},
		{Fault{Name: "a", Kind: Latency, Direction: "up"}, `stream "up"`},
		{Fault{Name: "a", Kind: Latency, Direction: Upstream}, "latency: want latency or jitter"},
		{Fault{Name: "a", Kind: Bandwidth, Direction: Upstream}, "rate 0"},
		{Fault{Name: "a", Kind: Reset, Direction: Upstream, Toxicity: 1.5}, "toxicity 1.5"},
		{Fault{Name: "", Kind: Reset, Direction: Upstream}, `name ""`},
		{Fault{Name: "a", Kind: Latency, Direction: Upstream, Latency: -time.Second}, "latency -1s"},
	} {
		if err := tc.f.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.f, err, tc.want)
		}
	}
}

func TestAPI(t *testing.T) {
	up, _ := echoServer(t)
	s := NewServer(nil)
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	call := func(method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := call("POST", "/proxies", `{"name":"db","listen":"127.0.0.1:0","upstream":"`+up+`"}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, out)
	}
	listen := out["listen"].(string)
	if code, _ := call("POST", "/proxies", `{"name":"db","listen":"127.0.0.1:0","upstream":"`+up+`"}`); code != 409 {
		t.Errorf("duplicate: %d", code)
	}
	if code, out := call("POST", "/proxies/db/faults", `{"name":"slow","type":"latency","stream":"downstream","latency":"soon"}`); code != 400 || !strings.Contains(out["error"].(string), `latency "soon"`) {
		t.Errorf("bad duration: %d %v", code, out)
	}
	if code, out := call("POST", "/proxies/db/faults", `{"name":"slow","type":"latency","latncy":"1s"}`); code != 400 || !strings.Contains(out["error"].(string), `unknown field "latncy"`) {
		t.Errorf("unknown field: %d %v", code, out)
	}
	if code, out := call("POST", "/proxies/db/faults", `{"name":"slow","type":"latency","stream":"downstream","latency":"250ms"}`); code != 201 || len(out["faults"].([]any)) != 1 {
		t.Fatalf("add fault: %d %v", code, out)
	}
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if d := roundTrip(t, c, []byte("q")); d < 250*time.Millisecond {
		t.Errorf("round trip %s through a 250ms fault", d)
	}
	if code, _ := call("DELETE", "/proxies/db/faults/nope", ""); code != 404 {
		t.Errorf("delete unknown fault: %d", code)
	}
	if code, _ := call("POST", "/reset", ""); code != 204 {
		t.Errorf("reset: %d", code)
	}
	if code, out := call("GET", "/proxies/db", ""); code != 200 || len(out["faults"].([]any)) != 0 {
		t.Errorf("after reset: %d %v", code, out)
	}
	if code, _ := call("POST", "/proxies/db", `{"enabled":false}`); code != 200 {
		t.Errorf("disable: %d", code)
	}
	if code, _ := call("PUT", "/proxies/db", ""); code != 405 {
		t.Errorf("wrong method: %d", code)
	}
	if code, _ := call("DELETE", "/proxies/db", ""); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if code, _ := call("GET", "/proxies/db", ""); code != 404 {
		t.Errorf("deleted proxy: %d", code)
	}
}

func FuzzFaultJSON(f *testing.F) {
	f.Add([]byte(`{"name":"slow","type":"latency","stream":"downstream","latency":"250ms","jitter":"10ms"}`))
	f.Add([]byte(`{"name":"x","type":"bandwidth","rate":-1}`))
	f.Add([]byte(`{"name":"x","type":"reset","bytes":9223372036854775807,"toxicity":0.5}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var j faultJSON
		if json.Unmarshal(data, &j) != nil {
			return
		}
		fault, err := j.fault()
		if err != nil {
			return
		}
		// Whatever passes validation is safe to apply.
		if fault.Latency < 0 || fault.Jitter < 0 || fault.Delay < 0 || fault.Toxicity < 0 || fault.Toxicity > 1 {
			t.Fatalf("validated fault out of range: %+v", fault)
		}
		if fault.Kind == Bandwidth && fault.Rate <= 0 {
			t.Fatalf("bandwidth without a rate passed: %+v", fault)
		}
		if back := toJSON(fault); back.Name != fault.Name || back.Kind != fault.Kind {
			t.Fatalf("round trip: %+v -> %+v", fault, back)
		}
	})
}

// Jitter on both directions at once: each direction draws its own.
func TestJitterBothWays(t *testing.T) {
	p, _ := newProxy(t)
	p.SetFault(Fault{Name: "up", Kind: Latency, Direction: Upstream, Latency: time.Millisecond, Jitter: time.Millisecond})
	p.SetFault(Fault{Name: "down", Kind: Latency, Direction: Downstream, Latency: time.Millisecond, Jitter: time.Millisecond})
	c := dial(t, p)
	for i := 0; i < 20; i++ {
		roundTrip(t, c, []byte("jj"))
	}
}

// TestAPICrossOriginRefused: a web page of another origin posting a form
// to a loopback chaos API (no preflight for text/plain) must not create a
// proxy or reset faults; programs sending neither Origin nor
// Sec-Fetch-Site are unaffected.
func TestAPICrossOriginRefused(t *testing.T) {
	up, _ := echoServer(t)
	s := NewServer(nil)
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	body := `{"name":"evil","listen":"127.0.0.1:0","upstream":"` + up + `"}`
	for _, hdr := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "http://evil.example"},
	} {
		req, _ := http.NewRequest("POST", srv.URL+"/proxies", strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin POST with %v: status %d, want 403", hdr, resp.StatusCode)
		}
	}
	if s.get("evil") != nil {
		t.Fatal("a cross-origin POST created a proxy")
	}
	resp, err := http.Post(srv.URL+"/proxies", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("same request from a program: status %d, want 201", resp.StatusCode)
	}
}
