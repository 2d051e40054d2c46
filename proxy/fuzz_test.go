package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzH1UpstreamResponse: whatever a target answers to one request, the
// next request on the same transport gets its own answer or an error,
// never bytes left over from the first.
func FuzzH1UpstreamResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + poison,
		"HTTP/1.1 204 No Content\r\n\r\nhello",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 099 X\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + poison,
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, first string) {
		served := false
		b := newScriptedBackend(t, func(c net.Conn, req *http.Request) []byte {
			if !served && req.URL.Path == "/first" {
				served = true
				return []byte(first)
			}
			return echoResponse(req)
		})
		tr := newTestH1(time.Second)
		defer tr.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+b.addr+"/first", nil)
		if resp, err := tr.RoundTrip(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		resp, err := tr.RoundTrip(mustReq(t, "GET", "http://"+b.addr+"/next"))
		if err != nil {
			return
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && string(got) != "echo GET /next" {
			t.Fatalf("after answer %q the next request got %q", first, got)
		}
	})
}

// FuzzDropH2CUpgrade: no h2c offer survives, and every other offer does.
func FuzzDropH2CUpgrade(f *testing.F) {
	for _, s := range []string{"h2c", "websocket", "H2C, websocket", "websocket,h2c", " , h2c ,", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Upgrade": {v}, "Http2-Settings": {"x"}}
		dropH2CUpgrade(h)
		var want []string
		hadH2C := false
		for tok := range strings.SplitSeq(v, ",") {
			if isH2C(tok) {
				hadH2C = true
			} else if tok = strings.TrimSpace(tok); tok != "" {
				want = append(want, tok)
			}
		}
		if !hadH2C {
			if h.Get("Upgrade") != v || h.Get("Http2-Settings") == "" {
				t.Fatalf("%q changed to %v", v, h)
			}
			return
		}
		if got := h.Get("Upgrade"); got != strings.Join(want, ", ") || h.Get("Http2-Settings") != "" {
			t.Fatalf("%q became Upgrade %q (%v)", v, got, h)
		}
	})
}
