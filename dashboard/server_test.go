package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countingStatus is a status source that counts its calls.
func countingStatus(n *atomic.Int64) func(context.Context) (Status, error) {
	return func(context.Context) (Status, error) {
		n.Add(1)
		return Status{ConfigFile: "g.yaml", Routes: []Route{{Name: "api", Upstream: "pool"}},
			Upstreams: []Upstream{{Name: "pool", Targets: []Target{{Address: "127.0.0.1:1", Healthy: true}}}}}, nil
	}
}

func newTestServer(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(PathPage, s)
	mux.Handle(PathPage+"/", s)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() { s.Close(); hs.Close() })
	return s, hs
}

// readEvents reads SSE events of type snapshot from r, sending each
// one's data on out (dropped when out is full) until r ends. Decoding is
// left to the receiver, so the reader keeps up with the stream.
func readEvents(r io.Reader, out chan<- string) {
	defer close(out)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4<<20), 4<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "snapshot":
			select {
			case out <- strings.TrimPrefix(line, "data: "):
			default: // the test is not taking them: keep reading, drop this one
			}
		case line == "":
			event = ""
		}
	}
}

func openStream(t *testing.T, ctx context.Context, url string) (*http.Response, chan string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+PathEvents, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream: %s %s", resp.Status, b)
	}
	ch := make(chan string, 100)
	go readEvents(resp.Body, ch)
	return resp, ch
}

func next(t *testing.T, ch <-chan string) Snapshot {
	t.Helper()
	select {
	case data, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		var s Snapshot
		if err := json.Unmarshal([]byte(data), &s); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot within 5s")
	}
	return Snapshot{}
}

// TestStreamLimits: snapshots arrive on the stream; a stream beyond
// max_streams gets 503; a closed client frees its slot; the producer runs
// only while a stream is open; Close ends every stream.
func TestStreamLimits(t *testing.T) {
	var calls atomic.Int64
	s, hs := newTestServer(t, Options{Config: Config{MaxStreams: 2}, Interval: 20 * time.Millisecond,
		Sources: Sources{Status: countingStatus(&calls)}})

	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	resp1, ch1 := openStream(t, ctx1, hs.URL)
	if ct := resp1.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	snap := next(t, ch1)
	if snap.Gateway.ConfigFile != "g.yaml" || len(snap.Upstreams) != 1 || snap.IntervalMS != 20 {
		t.Errorf("first snapshot: %+v", snap)
	}
	next(t, ch1)

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	_, ch2 := openStream(t, ctx2, hs.URL)
	next(t, ch2)
	if n := s.Streams(); n != 2 {
		t.Fatalf("streams %d, want 2", n)
	}
	resp, err := http.Get(hs.URL + PathEvents)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(body), "too many dashboard streams open (2, dashboard.max_streams)") {
		t.Errorf("third stream: %s %q", resp.Status, body)
	}

	// The client going frees its slot.
	cancel2()
	waitFor(t, "stream 2 freed", 5*time.Second, func() bool { return s.Streams() == 1 })
	_, ch3 := openStream(t, ctx2Fresh(t), hs.URL)
	next(t, ch3)

	// With no stream, no snapshots are built.
	cancel1()
	s.Close()
	for range ch3 { // Close ended the stream
	}
	waitFor(t, "streams closed", 5*time.Second, func() bool { return s.Streams() == 0 })
	before := calls.Load()
	time.Sleep(100 * time.Millisecond) // five intervals with no stream: the count must not move
	if after := calls.Load(); after != before {
		t.Errorf("status read %d times with no stream open", after-before)
	}
	if resp, err := http.Get(hs.URL + PathEvents); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("stream after Close: %s", resp.Status)
		}
	}
}

func ctx2Fresh(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// TestSlowClient: a client that never reads does not hold back another
// client's snapshots, and once its connection stops taking bytes for
// longer than the write timeout, its stream is closed.
func TestSlowClient(t *testing.T) {
	// Large snapshots (3000 targets), so the slow client's socket buffers
	// fill after a few.
	big := Status{Upstreams: []Upstream{{Name: "pool"}}}
	for i := 0; i < 3000; i++ {
		big.Upstreams[0].Targets = append(big.Upstreams[0].Targets, Target{Address: fmt.Sprintf("10.0.%d.%d:8080", i/256, i%256), Healthy: true})
	}
	s, hs := newTestServer(t, Options{Interval: 20 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		Sources: Sources{Status: func(context.Context) (Status, error) { return big, nil }}})

	// The slow one: sends its request, then never reads a byte.
	conn, err := net.Dial("tcp", hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", PathEvents)
	waitFor(t, "slow stream open", 5*time.Second, func() bool { return s.Streams() == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, ch := openStream(t, ctx, hs.URL)
	var last time.Time
	for i := 0; i < 5; i++ {
		snap := next(t, ch)
		if !snap.Time.After(last) || len(snap.Upstreams[0].Targets) != 3000 {
			t.Fatalf("snapshot %d not newer than the previous one, or cut", i)
		}
		last = snap.Time
	}
	// The slow stream is closed by its write timeout; the reader goes on.
	waitFor(t, "the slow stream closed", 30*time.Second, func() bool { return s.Streams() <= 1 })
	next(t, ch)
	if n := s.Streams(); n != 1 {
		t.Fatalf("streams %d, want the reading one", n)
	}
}

// TestPageHeaders: the page and its files are served with a strict CSP
// and no inline script or style; other methods and paths are refused.
func TestPageHeaders(t *testing.T) {
	_, hs := newTestServer(t, Options{})
	for _, c := range []struct{ path, ctype string }{
		{PathPage, "text/html"}, {PathStatic + "app.js", "javascript"}, {PathStatic + "app.css", "text/css"},
	} {
		resp, err := http.Get(hs.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("%s: %s %q", c.path, resp.Status, resp.Header.Get("Content-Type"))
		}
		p := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(p, "default-src 'none'") || !strings.Contains(p, "script-src 'self'") || strings.Contains(p, "unsafe") {
			t.Errorf("%s: CSP %q", c.path, p)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", c.path)
		}
		if c.ctype == "text/html" && (strings.Contains(string(body), "<script>") || strings.Contains(string(body), "style=") ||
			strings.Contains(string(body), "http://") && !strings.Contains(string(body), `xmlns="http://www.w3.org/2000/svg"`)) {
			t.Errorf("page has inline code or external references")
		}
		if c.ctype == "javascript" && strings.Contains(string(body), "innerHTML") {
			t.Errorf("app.js uses innerHTML")
		}
	}
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{http.MethodPost, PathPage, 405}, {http.MethodGet, PathPage + "/nope", 404},
		{http.MethodGet, PathStatic + "missing.js", 404}, {http.MethodGet, PathPage + "/", 301},
	} {
		req, _ := http.NewRequest(c.method, hs.URL+c.path, nil)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: %s, want %d", c.method, c.path, resp.Status, c.code)
		}
	}

	// Disabled: every path is 404.
	_, off := newTestServer(t, Options{Config: Config{Disabled: true}})
	resp, err := http.Get(off.URL + PathPage)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("disabled: %s", resp.Status)
	}
}
