package httpserver

import (
	"bufio"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// Request contexts carry http.ServerContextKey and LocalAddrContextKey, as
// net/http's server sets them: httputil.ReverseProxy aborts a response
// whose upstream body breaks off (panics with http.ErrAbortHandler) only
// when it sees ServerContextKey, and otherwise ends it as if complete.
func TestContextKeysAndReverseProxyAbort(t *testing.T) {
	upstream, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Close()
	go func() {
		for {
			c, err := upstream.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				// A chunk of 16 bytes announced, 7 sent, then the close.
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\npartial")
			}()
		}
	}()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: upstream.Addr().String()})
	rp.ErrorLog = stdlog.New(io.Discard, "", 0)
	rp.Transport = &http.Transport{}
	var log logBuffer
	var srvVal, addrVal any
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			srvVal, addrVal = r.Context().Value(http.ServerContextKey), r.Context().Value(http.LocalAddrContextKey)
			return
		}
		rp.ServeHTTP(w, r)
	}), func(s *Server) { s.ErrorLog = log.logger() })

	c := dial(t, ts.addr)
	c.roundTrip("GET", get("/keys"))
	if s, ok := srvVal.(*http.Server); !ok || s == nil {
		t.Errorf("http.ServerContextKey holds %T %v, want a *http.Server", srvVal, srvVal)
	}
	if a, ok := addrVal.(net.Addr); !ok || a.String() != ts.addr {
		t.Errorf("http.LocalAddrContextKey holds %v, want %s", addrVal, ts.addr)
	}

	c.send(get("/broken"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("a broken upstream body reached the client as complete: %q", body)
	}
	c.expectClosed()
	if strings.Contains(log.String(), "panic") {
		t.Errorf("the abort was logged as a panic: %s", log.String())
	}
}
