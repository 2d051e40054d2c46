package notifications_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/notifications"
)

type wsFrame struct {
	ID    string          `json:"id"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

func dialWS(t *testing.T, base, user, role string, q string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{}
	h.Set(hitch.HeaderUser, user)
	h.Set(hitch.HeaderScopes, role)
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/events/ws"+q, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake %d", resp.StatusCode)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func readFrame(t *testing.T, c *websocket.Conn, within time.Duration) wsFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f wsFrame
	if typ != websocket.MessageText || json.Unmarshal(b, &f) != nil {
		t.Fatalf("frame %v %q is not a JSON text frame", typ, b)
	}
	return f
}

func TestWebSocketPushAndReplay(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{Heartbeat: 20 * time.Millisecond})
	c := dialWS(t, r.srv.URL, "rider-1", hitch.RoleRider, "")
	waitClients(t, r.svc, 1)
	r.svc.Push(hitch.KindPaymentCharged, "c1", mustJSON(t, hitch.PaymentCharged{RideRef: hitch.RideRef{RideID: "r1", RiderID: "rider-1"}, AmountCents: 900}))
	f := readFrame(t, c, 2*time.Second)
	if f.ID != "c1" || f.Event != notifications.Receipt || !strings.Contains(string(f.Data), `"amount_cents":900`) {
		t.Fatalf("got %+v", f)
	}
	// Idle but pinged: well past many heartbeats the socket still works
	// (the client's Read answers the pings).
	readCtx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, _, err := c.Read(readCtx)
	expired := readCtx.Err() != nil
	cancel()
	// Our deadline closes the socket (coder/websocket): a pong being
	// written at that moment fails as a closed connection rather than
	// the deadline, which CI saw once. Either way the socket lasted
	// until our deadline; the server closing it would be another error.
	if !errors.Is(err, context.DeadlineExceeded) && !(expired && errors.Is(err, net.ErrClosed)) {
		t.Fatalf("idle read: %v, want a timeout with the socket kept", err)
	}
	// (a cancelled Read closes a coder/websocket connection: dial again)
	c.CloseNow()
	waitClients(t, r.svc, 0)
	r.svc.Push(hitch.KindRideStarted, "s2", mustJSON(t, hitch.RideRef{RideID: "r2", RiderID: "rider-1"}))
	c2 := dialWS(t, r.srv.URL, "rider-1", hitch.RoleRider, "?last_event_id=c1")
	if f := readFrame(t, c2, 2*time.Second); f.ID != "s2" || f.Event != notifications.RideStarted {
		t.Fatalf("replay: %+v", f)
	}
}

// The server's pings keep an idle socket: a client that only reads sees
// no close for many heartbeats, and answers each ping.
func TestWebSocketIdleButPinged(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{Heartbeat: 20 * time.Millisecond, WriteTimeout: 100 * time.Millisecond})
	c := dialWS(t, r.srv.URL, "u", hitch.RoleRider, "")
	waitClients(t, r.svc, 1)
	got := make(chan wsFrame, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, b, err := c.Read(ctx) // answers pings meanwhile
		var f wsFrame
		if err == nil {
			_ = json.Unmarshal(b, &f)
		}
		got <- f
	}()
	time.Sleep(500 * time.Millisecond) // 25 pings, each needing a pong within 100ms
	if r.svc.Clients() != 1 {
		t.Fatal("an idle client that answers pings was dropped")
	}
	r.svc.Push(hitch.KindRideStarted, "late", mustJSON(t, hitch.RideRef{RideID: "r", RiderID: "u"}))
	if f := <-got; f.ID != "late" {
		t.Fatalf("after idling: %+v", f)
	}
}

// closeStatus reads until the server ends the connection, failing the
// test if it does not within 5 s.
func closeStatus(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal("the server kept the connection")
			}
			return websocket.CloseStatus(err)
		}
	}
}

func TestWebSocketClientFrames(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{ReadLimit: 1024})
	t.Run("oversized", func(t *testing.T) {
		c := dialWS(t, r.srv.URL, "u", hitch.RoleRider, "")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Write(ctx, websocket.MessageBinary, make([]byte, 64<<10))
		closeStatus(t, c) // returns once the server cut it
		waitClients(t, r.svc, 0)
	})
	t.Run("data message", func(t *testing.T) {
		c := dialWS(t, r.srv.URL, "u", hitch.RoleRider, "")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Write(ctx, websocket.MessageText, []byte(`{"subscribe":"everyone"}`))
		closeStatus(t, c)
		waitClients(t, r.svc, 0)
	})
	for name, garbage := range map[string][]byte{
		"unmasked frame":     {0x81, 0x05, 'h', 'e', 'l', 'l', 'o'},
		"reserved bits":      {0xF1, 0x80, 1, 2, 3, 4},
		"reserved opcode":    {0x83, 0x80, 1, 2, 3, 4},
		"huge length":        {0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4},
		"fragmented control": {0x09, 0x80, 1, 2, 3, 4},
		"noise":              []byte("GET / HTTP/1.1\r\n\r\n\x00\xff\xfe"),
	} {
		t.Run(name, func(t *testing.T) {
			conn := rawWS(t, r.srv.URL)
			if _, err := conn.Write(garbage); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			// The server closes: whatever it says first, the connection
			// then ends (EOF or reset), well before the deadline.
			buf := make([]byte, 4096)
			for {
				_, err := conn.Read(buf)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatal("the server kept a connection that sent a broken frame")
					}
					break
				}
			}
			waitClients(t, r.svc, 0)
		})
	}
}

// rawWS does the opening handshake by hand and returns the connection.
func rawWS(t *testing.T, base string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /v1/events/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s: u\r\n%s: rider\r\n\r\n",
		strings.TrimPrefix(base, "http://"), hitch.HeaderUser, hitch.HeaderScopes)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	if br.Buffered() > 0 {
		t.Fatal("bytes after the handshake")
	}
	return conn
}

// A client that never reads its socket is dropped after its buffer
// fills; another client keeps getting its notifications.
func TestWebSocketSlowConsumer(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{ClientBuffer: 4, WriteTimeout: 200 * time.Millisecond})
	slow := rawWS(t, r.srv.URL) // user "u", never reads
	if tc, ok := slow.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fast := dialWS(t, r.srv.URL, "f", hitch.RoleRider, "")
	waitClients(t, r.svc, 2)
	big := hitch.PaymentFailed{RideRef: hitch.RideRef{RiderID: "u"}, Reason: strings.Repeat("y", 4000)}
	start := time.Now()
	for i := 0; r.svc.Dropped() == 0; i++ {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the never-reading WebSocket client was not dropped")
		}
		big.RideID = fmt.Sprint("r", i)
		r.svc.Push(hitch.KindPaymentFailed, fmt.Sprint("s", i), mustJSON(t, big))
		if i%100 == 0 {
			r.svc.Push(hitch.KindRideStarted, fmt.Sprint("f", i), mustJSON(t, hitch.RideRef{RideID: fmt.Sprint("f", i), RiderID: "f"}))
			if f := readFrame(t, fast, time.Second); f.ID != fmt.Sprint("f", i) {
				t.Fatalf("fast client got %+v", f)
			}
		}
	}
	waitClients(t, r.svc, 1)
}

// Run inside an http.Server with short ReadTimeout and WriteTimeout (as a
// service process may be), both streams outlive them.
func TestStreamsOutliveServerTimeouts(t *testing.T) {
	svc, err := notifications.New(context.Background(), nil, nil, notifications.Config{Heartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(svc.Handler())
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Config.WriteTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close) // after the clients' cleanups close their streams

	sse := dialSSE(t, srv.URL, "a", hitch.RoleRider)
	ws := dialWS(t, srv.URL, "b", hitch.RoleRider, "")
	waitClients(t, svc, 2)
	got := make(chan wsFrame, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var f wsFrame
		if _, b, err := ws.Read(ctx); err == nil {
			_ = json.Unmarshal(b, &f)
		}
		got <- f
	}()
	time.Sleep(700 * time.Millisecond) // 3.5x both timeouts
	svc.Push(hitch.KindRideStarted, "late-a", mustJSON(t, hitch.RideRef{RideID: "r1", RiderID: "a"}))
	svc.Push(hitch.KindRideStarted, "late-b", mustJSON(t, hitch.RideRef{RideID: "r2", RiderID: "b"}))
	if ev := sse.next(t, 2*time.Second); ev.id != "late-a" {
		t.Fatalf("SSE after the server's timeouts: %+v", ev)
	}
	if f := <-got; f.ID != "late-b" {
		t.Fatalf("WebSocket after the server's timeouts: %+v", f)
	}
}
