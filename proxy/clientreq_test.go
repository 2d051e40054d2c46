package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzReadAhead feeds arbitrary requests (framing and body) through the
// read-ahead: a body that parses arrives unchanged, buffered only when it
// fits max_body_buffer and the budget; a body that does not parse fails
// with a *ClientBodyError, before or while it is streamed; the budget is
// never overdrawn.
func FuzzReadAhead(f *testing.F) {
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"), uint8(16), uint8(64))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello"), uint8(16), uint8(64))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello"), uint8(16), uint8(64))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"), uint8(4), uint8(64))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), uint8(16), uint8(3))
	f.Add([]byte("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"), uint8(3), uint8(3))
	f.Fuzz(func(t *testing.T, raw []byte, maxBody, total uint8) {
		parse := func() *http.Request {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
			if err != nil || req.Body == nil || req.Body == http.NoBody {
				return nil
			}
			return req
		}
		ref := parse()
		if ref == nil {
			return
		}
		want, wantErr := io.ReadAll(ref.Body)
		req := parse()
		h := New(nil, Options{MaxBodyBuffer: int(maxBody) + 1, MaxBodyBufferTotal: int64(total) + 1})
		st := &reqState{Context: context.Background(), clientCtx: context.Background()}
		cb := wrapBody(httptest.NewRecorder(), req, st)
		ok := h.readAhead(req, st, cb)
		if h.buffered.Load() != st.reserved || st.reserved > h.maxBodyTotal || st.reserved > int64(h.maxBody) {
			t.Fatalf("reserved %d, budget used %d of %d, max_body_buffer %d", st.reserved, h.buffered.Load(), h.maxBodyTotal, h.maxBody)
		}
		if !ok {
			if wantErr == nil {
				t.Fatalf("read-ahead failed on a body that reads fine (%q)", want)
			}
			if st.bodyErr.Load() == nil {
				t.Fatal("read-ahead failed without a ClientBodyError")
			}
			return
		}
		got, err := io.ReadAll(req.Body)
		if wantErr != nil {
			var ce *ClientBodyError
			if st.bodyMode != bodyStreamed || !errors.As(err, &ce) || st.bodyErr.Load() != ce {
				t.Fatalf("bad body (%v): mode %d, read error %v, want a streamed body failing with the recorded ClientBodyError", wantErr, st.bodyMode, err)
			}
			return
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("body %q (%v), want %q", got, err, want)
		}
		if st.bodyMode == bodyBuffered && (!bytes.Equal(st.body, want) || len(want) > h.maxBody) {
			t.Fatalf("buffered %q of %q with max_body_buffer %d", st.body, want, h.maxBody)
		}
		if st.bodyMode == bodyStreamed && len(want) <= h.maxBody && h.maxBodyTotal >= int64(h.maxBody) {
			t.Fatalf("a body of %d bytes was streamed with max_body_buffer %d and room in the budget", len(want), h.maxBody)
		}
	})
}

// FuzzGatewayHeaders checks that whatever a client names in Connection and
// whatever names it spells with underscores, the headers the gateway sets
// arrive upstream as set, no field the client listed in Connection does,
// and no underscore spelling of a gateway header does.
func FuzzGatewayHeaders(f *testing.F) {
	f.Add("X-Consumer, X-Scopes", "X_Consumer", "X-Client")
	f.Add("close, x-degraded ,X-Forwarded-For", "X_Forwarded_For", "x_client")
	f.Add("Upgrade", "X_Degraded", "Upgrade")
	f.Add(",,keep-alive, X-Client", "x_request_id", "X-Client")
	f.Fuzz(func(t *testing.T, conn, spoof, extra string) {
		names := []string{spoof, extra, "X-Consumer", "X-Degraded", "X-Forwarded-For", "X_Scopes"}
		h := http.Header{"Connection": {conn}}
		for _, n := range names {
			if n != "" {
				h[n] = append(h[n], "client")
				h[http.CanonicalHeaderKey(n)] = append(h[http.CanonicalHeaderKey(n)], "client")
			}
		}
		listed := sanitizeClientHeaders(h)
		for _, n := range listed {
			if _, ok := h[n]; ok {
				t.Fatalf("%s, listed in Connection %q, still in the request", n, conn)
			}
		}
		// The gateway's middleware and rewrite set their headers.
		h["X-Consumer"] = []string{"alice"}
		h["X-Degraded"] = []string{"1"}
		in := h
		out := in.Clone()
		removeHopByHop(out)
		restoreGatewayHeaders(in, out, listed)
		dropUnderscoreSpoofs(out)
		if v := out["X-Consumer"]; len(v) != 1 || v[0] != "alice" {
			t.Fatalf("X-Consumer upstream %q, want alice (Connection %q)", v, conn)
		}
		if v := out["X-Degraded"]; len(v) != 1 || v[0] != "1" {
			t.Fatalf("X-Degraded upstream %q, want 1 (Connection %q)", v, conn)
		}
		for k, v := range out {
			if strings.IndexByte(k, '_') >= 0 && gatewayHeaders[http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))] {
				t.Fatalf("%s: %q upstream, an underscore spelling of a gateway header", k, v)
			}
			for _, n := range listed {
				if k == n && k != "X-Consumer" && k != "X-Degraded" {
					t.Fatalf("%s upstream although the client listed it in Connection %q", k, conn)
				}
			}
		}
	})
}
