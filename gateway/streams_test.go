package gateway

// What Hitch's notifications need from the gateway, checked end to end
// with real clients: an SSE stream and a WebSocket on a route with JWT
// authentication, a rate limit and the edge cache, under server and
// upstream timeouts much shorter than the streams' idle gaps.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

const streamsConfig = `
listen: 127.0.0.1:0
access_log: off
server:
  http1: %s
  read_header_timeout: 300ms
  idle_timeout: 300ms
  read_body_timeout: 300ms
  write_timeout: 300ms
auth:
  jwt: { algorithms: [HS256], secret: %q }
caches:
  edge: { memory: 1MiB }
upstreams:
  notifications:
    targets: [{address: %s}]
    timeout: { response: 200ms }
routes:
  - match: { path_prefix: /v1/events }
    upstream: notifications
    auth: [jwt]
    cache: edge
    rate_limit: { limits: [{ rate: 100/s, burst: 100 }] }
`

func streamsGateway(t *testing.T, server string, be *backend) (gw *running, token string) {
	t.Helper()
	secret := strings.Repeat("k", 40)
	gw = startGateway(t, fmt.Sprintf(streamsConfig, server, secret, be.addr()))
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "rider-1", "scope": "rider", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return gw, tok
}

// Each event reaches the client when the upstream flushes it, also after
// idle gaps longer than every server and upstream timeout.
func TestStreamsSSEThroughAuthenticatedCachedRoute(t *testing.T) {
	for _, server := range []string{"switchyard", "net/http"} {
		t.Run(server, func(t *testing.T) { testStreamsSSE(t, server) })
	}
}

func testStreamsSSE(t *testing.T, server string) {
	be := newBackend(t, "notifications")
	next := make(chan int)
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Consumer") != "rider-1" || r.Header.Get("X-Scopes") != "rider" {
			http.Error(w, "no identity", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		for {
			select {
			case i, ok := <-next:
				if !ok {
					return
				}
				fmt.Fprintf(w, "id: %d\nevent: tick\ndata: {\"n\":%d}\n\n", i, i)
				if rc.Flush() != nil {
					return
				}
			case <-r.Context().Done():
				return
			}
		}
	})
	gw, tok := streamsGateway(t, server, be)

	if code, _, _ := get(t, gw.url+"/v1/events"); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", code)
	}
	req, _ := http.NewRequest(http.MethodGet, gw.url+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /v1/events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		if i > 0 {
			time.Sleep(500 * time.Millisecond) // idle: past idle, write and response timeouts
		}
		sent := time.Now()
		next <- i
		for _, want := range []string{fmt.Sprintf("id: %d\n", i), "event: tick\n", fmt.Sprintf("data: {\"n\":%d}\n", i), "\n"} {
			if got := readLine(t, br, 2*time.Second); got != want {
				t.Fatalf("event %d: line %q, want %q", i, got, want)
			}
		}
		if d := time.Since(sent); d > time.Second {
			t.Fatalf("event %d took %v to arrive: buffered", i, d)
		}
	}
	close(next)
}

// A WebSocket upgrade passes (101, then bytes both ways) and the socket
// stays open while idle as long as the upstream pings, well past the
// gateway's timeouts.
func TestStreamsWebSocketIdleButPinged(t *testing.T) {
	for _, server := range []string{"switchyard", "net/http"} {
		t.Run(server, func(t *testing.T) { testStreamsWebSocket(t, server) })
	}
}

func testStreamsWebSocket(t *testing.T, server string) {
	be := newBackend(t, "notifications")
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Consumer") != "rider-1" {
			http.Error(w, "no identity", http.StatusUnauthorized)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		go func() { // ping every 50ms, as the notifications service does every 15s
			for ctx.Err() == nil {
				pctx, pcancel := context.WithTimeout(ctx, time.Second)
				err := c.Ping(pctx)
				pcancel()
				if err != nil {
					cancel()
					return
				}
				select {
				case <-time.After(50 * time.Millisecond):
				case <-ctx.Done():
				}
			}
		}()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	})
	gw, tok := streamsGateway(t, server, be)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(gw.url, "http") + "/v1/events/ws"

	if _, resp, err := websocket.Dial(ctx, wsURL, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %v %v, want 401", resp, err)
	}
	c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		t.Fatalf("dial through the gateway: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake %d", resp.StatusCode)
	}
	// The client reads all along (answering pings); a message goes both
	// ways before and after 1.5 s of silence (5x every timeout).
	got := make(chan string, 4)
	go func() {
		defer close(got)
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			got <- string(b)
		}
	}()
	exchange := func(msg string) {
		t.Helper()
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		select {
		case b, ok := <-got:
			if !ok || b != "echo: "+msg {
				t.Fatalf("got %q (open %v), want the echo of %q", b, ok, msg)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("no echo of %q", msg)
		}
	}
	exchange("hello")
	time.Sleep(1500 * time.Millisecond)
	exchange("still here")
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("close: %v", err)
	}
}
