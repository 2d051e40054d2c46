package h2

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Tests of the fourth attacker's pass (h2att17l).

// TestProvokedResetsRateLimited (CVE-2025-8671, "MadeYouReset"): a client
// that makes the server reset its open streams (here a WINDOW_UPDATE of 0
// on each, a stream error) cancels running handlers as RST_STREAM does;
// those resets count against MaxResetsPerSecond too, or the rapid-reset
// limit is bypassed by sending any invalid frame instead of RST_STREAM.
func TestProvokedResetsRateLimited(t *testing.T) {
	var started atomic.Int32
	addr := start(t, &Server{MaxResetsPerSecond: 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-r.Context().Done()
	})})
	r := dialRaw(t, addr)
	r.fr.AllowIllegalWrites = true
	for i := uint32(0); i < 40; i++ {
		id := 1 + 2*i
		r.headers(id, false, "/work")
		if err := r.fr.WriteWindowUpdate(id, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.fr.WritePing(false, [8]byte{7}); err != nil {
		t.Fatal(err)
	}
	var code http2.ErrCode
	gotGoAway := false
	r.next(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			code, gotGoAway = f.ErrCode, true
			return true
		case *http2.PingFrame:
			return f.IsAck() && f.Data == [8]byte{7}
		}
		return false
	})
	if !gotGoAway || code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("40 provoked resets in a second with a limit of 10: GOAWAY %v (seen %v), %d handlers started", code, gotGoAway, started.Load())
	}
}

// rawBlocks is a client that reads header blocks undecoded, to see the
// HPACK instructions the server's encoder emits.
func rawBlocks(t *testing.T, addr string, settings ...http2.Setting) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fr := http2.NewFramer(c, c)
	if _, err := c.Write(preface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return c, fr
}

// TestHeaderTableSizeZeroThenBackSignalled: a SETTINGS frame lowering
// SETTINGS_HEADER_TABLE_SIZE to 0 and raising it again must make the
// encoder signal the smallest size (0) at the start of the next header
// block (RFC 7541 4.2): a decoder that evicted its table on the 0 would
// otherwise be sent references to entries it no longer has.
func TestHeaderTableSizeZeroThenBackSignalled(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("v", 100))
		_, _ = io.WriteString(w, "ok")
	})})
	c, fr := rawBlocks(t, addr)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	req := func(id uint32) {
		hb.Reset()
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	block := func(id uint32) []byte {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := f.(*http2.HeadersFrame); ok && h.StreamID == id {
				return bytes.Clone(h.HeaderBlockFragment())
			}
		}
	}
	req(1) // the encoder's table gets entries
	_ = block(1)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 4096}); err != nil {
		t.Fatal(err)
	}
	req(3)
	b := block(3)
	// A dynamic table size update is 001xxxxx; the value 0 is 0x20.
	if len(b) == 0 || b[0] != 0x20 {
		t.Fatalf("header block after HEADER_TABLE_SIZE 0 then 4096 starts % x, want a table size update to 0 (20)", b[:min(len(b), 4)])
	}
}

// TestMethodNotATokenRefused: a :method that is no token (a space, a
// tab, a slash...) is malformed (RFC 9113 8.3.1, RFC 9110 9.1) and never
// reaches the route: passed on to an HTTP/1.1 upstream it would write a
// request line of more than three parts ("GET /admin /public HTTP/1.1"),
// which servers split differently from the gateway's routing.
func TestMethodNotATokenRefused(t *testing.T) {
	var reached atomic.Int32
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	})})
	r := dialRaw(t, addr)
	for i, m := range []string{"GET /admin", "GET\t/admin", "GE(T", "", "G\x7fT"} {
		id := uint32(1 + 2*i)
		r.hb.Reset()
		for _, kv := range [][2]string{{":method", m}, {":scheme", "http"}, {":authority", "x"}, {":path", "/public"}} {
			_ = r.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if code := r.reset(id); code != http2.ErrCodeProtocol {
			t.Fatalf(":method %q: RST_STREAM %v, want PROTOCOL_ERROR", m, code)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("%d requests with an invalid method reached the handler", n)
	}
}

// TestFieldValueEdgeWhitespaceTrimmed: a field value starting or ending
// with SP or HTAB (which RFC 9113 8.2.1 forbids) reaches the route
// trimmed, as the same request over HTTP/1.1 does: passed on as it came,
// the route saw " key" (header matches, rate-limit and hash keys) where
// an HTTP/1.1 upstream, which trims it, sees "key". Trailers likewise.
func TestFieldValueEdgeWhitespaceTrimmed(t *testing.T) {
	seen := make(chan string, 8)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		seen <- r.Header.Get("X-Api-Key") + "|" + r.Trailer.Get("X-T") + "|" + fmt.Sprint(r.ContentLength)
	})})
	r := dialRaw(t, addr)
	for i, v := range []string{" key", "key ", "\tkey", "key\t", " \tkey\t "} {
		id := uint32(1 + 2*i)
		r.headers(id, true, "/", "x-api-key", v)
		if st := r.status(id); st != "200" {
			t.Fatalf("value %q: status %s", v, st)
		}
		if got := <-seen; got != "key||0" {
			t.Fatalf("value %q reached the route as %q", v, got)
		}
	}
	r.headers(11, true, "/", "x-api-key", "a b\tc")
	_ = r.status(11)
	if got := <-seen; got != "a b\tc||0" {
		t.Fatalf("inner whitespace: %q", got)
	}
	r.headers(13, false, "/", "content-length", " 2 ")
	if err := r.fr.WriteData(13, false, []byte("ab")); err != nil {
		t.Fatal(err)
	}
	r.hb.Reset()
	_ = r.enc.WriteField(hpack.HeaderField{Name: "x-t", Value: " tv\t"})
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 13, BlockFragment: r.hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	_ = r.status(13)
	if got := <-seen; got != "|tv|2" {
		t.Fatalf("trailer: %q", got)
	}
}

var _ = context.Background
var _ = fmt.Sprint
var _ = runtime.Gosched
