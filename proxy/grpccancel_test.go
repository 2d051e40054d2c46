package proxy

import (
	"bufio"
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/upstream"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawClient is a frame-level HTTP/2 client of the gateway.
type rawClient struct {
	mu  sync.Mutex // the write side
	nc  net.Conn
	bw  *bufio.Writer
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
}

func dialRawClient(t *testing.T, addr string, initWindow uint32) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &rawClient{nc: nc, bw: bufio.NewWriter(nc)}
	c.fr = http2.NewFramer(c.bw, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hb)
	_, _ = c.bw.WriteString(http2.ClientPreface)
	_ = c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: initWindow})
	_ = c.bw.Flush()
	// The connection's frames are read (and the server's SETTINGS
	// acknowledged) for as long as the test runs.
	go func() {
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				return
			}
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				c.mu.Lock()
				_ = c.fr.WriteSettingsAck()
				_ = c.bw.Flush()
				c.mu.Unlock()
			}
		}
	}()
	return c
}

func (c *rawClient) call(id uint32, body string, end bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hb.Reset()
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/s/Call"}, {":authority", "gw"},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	_ = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hb.Bytes(), EndHeaders: true})
	_ = c.fr.WriteData(id, end, []byte(body))
	_ = c.bw.Flush()
}

// A client that resets its call, or closes its connection, at each phase
// of a gRPC call through the gateway (httpserver/h2, the h2c pool): the
// upstream's stream is reset at once, and its connection keeps no stream.
func TestGRPCClientGoneResetsUpstream(t *testing.T) {
	var rc *rawConn // the subtest's upstream connection
	phases := []struct {
		name   string
		window uint32 // the client's initial stream window
		upload bool   // the request body is still going up
		// before the client goes: what the upstream sends
		answer func(id uint32)
		// what the gateway's upstream stream must have seen of it
		// before the client goes (s.mu held)
		taken func(s *h2Stream) bool
	}{
		{name: "before the response header", answer: func(uint32) {}},
		{name: "uploading", upload: true, answer: func(uint32) {}},
		{name: "uploading, header received", upload: true, answer: func(id uint32) {
			rc.headers(t, id, false, ":status", "200", "content-type", "application/grpc")
		}, taken: func(s *h2Stream) bool { return s.gotResp }},
		{name: "during the response body", window: 65535, answer: func(id uint32) {
			rc.headers(t, id, false, ":status", "200", "content-type", "application/grpc")
			rc.data(t, id, false, []byte("abc"))
		}, taken: func(s *h2Stream) bool { return s.readData }},
		{name: "writing to a slow client", window: 0, answer: func(id uint32) {
			rc.headers(t, id, false, ":status", "200", "content-type", "application/grpc")
			for i := 0; i < 4; i++ {
				rc.data(t, id, false, bytes.Repeat([]byte("z"), 1000))
			}
		}, taken: func(s *h2Stream) bool { return s.readData }},
	}
	for _, how := range []string{"reset", "close"} {
		for _, p := range phases {
			t.Run(how+"/"+p.name, func(t *testing.T) {
				up := startRawH2(t)
				targets := []*upstream.Target{upstream.NewTarget(up.addr, 0, 1)}
				pol, err := balance.New(balance.Config{}, targets)
				if err != nil {
					t.Fatal(err)
				}
				pool, err := NewPool(PoolConfig{Name: "g", Targets: targets, Policy: pol, Protocol: ProtocolH2C})
				if err != nil {
					t.Fatal(err)
				}
				rt := &Route{Name: "g", Pool: pool}
				ph := New(staticResolver{rt}, Options{})
				ph.Prepare(rt)
				gw := serveH2(t, ph)
				h2t := pool.transport.(grpcSplit).grpc
				t.Cleanup(h2t.CloseIdleConnections)

				c := dialRawClient(t, gw, p.window)
				c.call(1, "hello", !p.upload)
				rc = up.accept(t)
				var id uint32
				for {
					f := rc.next(t)
					if h, ok := f.(*http2.MetaHeadersFrame); ok {
						id = h.StreamID
						break
					}
				}
				if d, ok := rc.next(t).(*http2.DataFrame); !ok || string(d.Data()) != "hello" {
					t.Fatalf("want DATA hello, got %v", d)
				}
				p.answer(id)
				// The gateway has taken what was sent (a response it
				// may be writing, blocked on the client's window).
				for deadline := time.Now().Add(10 * time.Second); p.taken != nil; time.Sleep(time.Millisecond) {
					var ok bool
					h2t.mu.Lock()
					for _, cc := range h2t.conns[up.addr] {
						cc.mu.Lock()
						for _, s := range cc.streams {
							s.mu.Lock()
							ok = ok || p.taken(s)
							s.mu.Unlock()
						}
						cc.mu.Unlock()
					}
					h2t.mu.Unlock()
					if ok {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the gateway never took the upstream's answer")
					}
				}
				if how == "reset" {
					c.mu.Lock()
					_ = c.fr.WriteRSTStream(1, http2.ErrCodeCancel)
					_ = c.bw.Flush()
					c.mu.Unlock()
				} else {
					c.nc.Close()
				}
				for {
					f := rc.next(t)
					if r, ok := f.(*http2.RSTStreamFrame); ok {
						if r.StreamID != id || r.ErrCode != http2.ErrCodeCancel {
							t.Fatalf("got %v, want RST_STREAM CANCEL on %d", r, id)
						}
						break
					}
					if _, ok := f.(*http2.DataFrame); !ok {
						t.Fatalf("got %v, want RST_STREAM CANCEL on %d", f, id)
					}
				}
				deadline := time.Now().Add(10 * time.Second)
				for {
					h2t.mu.Lock()
					n := 0
					for _, cc := range h2t.conns[up.addr] {
						cc.mu.Lock()
						n += len(cc.streams)
						cc.mu.Unlock()
					}
					h2t.mu.Unlock()
					if n == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the upstream connection still counts %d streams", n)
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
	}
}
