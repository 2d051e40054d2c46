package httpserver

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
)

func TestResponseFraming(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 200) // 3200 bytes, more than smallBody
	writeErrs := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			_, _ = io.WriteString(w, "hello")
		case "/big":
			// several writes, each below smallBody
			for i := 0; i < len(big); i += 1000 {
				_, _ = io.WriteString(w, big[i:min(i+1000, len(big))])
			}
		case "/declared":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = io.WriteString(w, big)
		case "/over":
			w.Header().Set("Content-Length", "3")
			_, _ = io.WriteString(w, "abc")
			_, err := io.WriteString(w, "d")
			writeErrs <- err
		case "/under":
			w.Header().Set("Content-Length", "10")
			_, _ = io.WriteString(w, "abc")
		case "/head-declared":
			w.Header().Set("Content-Length", "1234")
		case "/204", "/304":
			code, _ := strconv.Atoi(r.URL.Path[1:])
			w.WriteHeader(code)
			_, err := io.WriteString(w, "body")
			writeErrs <- err
		case "/204-declared":
			w.Header().Set("Content-Length", "4")
			w.WriteHeader(http.StatusNoContent)
		}
	})
	ts := startServer(t, h, nil)

	t.Run("small body gets Content-Length", func(t *testing.T) {
		c := dial(t, ts.addr)
		resp, body := c.roundTrip("GET", get("/small"))
		if body != "hello" || resp.ContentLength != 5 || len(resp.TransferEncoding) != 0 {
			t.Fatalf("body %q, Content-Length %d, Transfer-Encoding %q", body, resp.ContentLength, resp.TransferEncoding)
		}
	})

	t.Run("large body is chunked on HTTP/1.1", func(t *testing.T) {
		c := dial(t, ts.addr)
		for range 2 { // the connection stays usable
			resp, body := c.roundTrip("GET", get("/big"))
			if body != big || resp.ContentLength != -1 || strings.Join(resp.TransferEncoding, ",") != "chunked" || resp.Close {
				t.Fatalf("body %d bytes, Content-Length %d, Transfer-Encoding %q, close %v",
					len(body), resp.ContentLength, resp.TransferEncoding, resp.Close)
			}
		}
	})

	t.Run("large body is close-delimited on HTTP/1.0", func(t *testing.T) {
		for _, conn := range []string{"", "Connection: keep-alive\r\n"} {
			c := dial(t, ts.addr)
			resp, body := c.roundTrip("GET", "GET /big HTTP/1.0\r\n"+conn+"\r\n")
			if body != big || resp.ContentLength != -1 || len(resp.TransferEncoding) != 0 || !resp.Close {
				t.Fatalf("%q: body %d bytes, Content-Length %d, Transfer-Encoding %q, close %v",
					conn, len(body), resp.ContentLength, resp.TransferEncoding, resp.Close)
			}
			c.expectClosed()
		}
	})

	t.Run("declared Content-Length is honoured", func(t *testing.T) {
		c := dial(t, ts.addr)
		resp, body := c.roundTrip("GET", get("/declared"))
		if body != big || resp.ContentLength != int64(len(big)) || len(resp.TransferEncoding) != 0 {
			t.Fatalf("body %d bytes, Content-Length %d, Transfer-Encoding %q", len(body), resp.ContentLength, resp.TransferEncoding)
		}
	})

	t.Run("writing more than declared", func(t *testing.T) {
		c := dial(t, ts.addr)
		resp, body := c.roundTrip("GET", get("/over"))
		if err := recv(t, writeErrs, "the handler's write"); !errors.Is(err, http.ErrContentLength) {
			t.Fatalf("write past Content-Length returned %v", err)
		}
		if body != "abc" || resp.ContentLength != 3 {
			t.Fatalf("body %q, Content-Length %d", body, resp.ContentLength)
		}
		if _, body := c.roundTrip("GET", get("/small")); body != "hello" {
			t.Fatalf("next request: body %q", body)
		}
	})

	t.Run("writing less than declared closes", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(get("/under"))
		resp, body, err := c.tryResponse("GET")
		if !errors.Is(err, io.ErrUnexpectedEOF) || body != "abc" || resp.ContentLength != 10 {
			t.Fatalf("body %q, error %v", body, err)
		}
	})

	t.Run("HEAD has no body", func(t *testing.T) {
		c := dial(t, ts.addr)
		for _, tc := range []struct {
			path string
			cl   int64
		}{{"/head-declared", 1234}, {"/small", 5}, {"/declared", int64(len(big))}, {"/big", -1}} {
			resp, body := c.roundTrip("HEAD", "HEAD "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			if body != "" || resp.ContentLength != tc.cl || len(resp.TransferEncoding) != 0 {
				t.Fatalf("%s: body %q, Content-Length %d, Transfer-Encoding %q", tc.path, body, resp.ContentLength, resp.TransferEncoding)
			}
			if resp.Close {
				t.Fatalf("%s: HEAD closed the connection", tc.path)
			}
		}
		// The connection is still in step: no stray body bytes.
		if _, body := c.roundTrip("GET", get("/small")); body != "hello" {
			t.Fatalf("after HEAD: body %q", body)
		}
	})

	t.Run("204 and 304 have no body", func(t *testing.T) {
		c := dial(t, ts.addr)
		for _, path := range []string{"/204", "/304", "/204-declared"} {
			resp, body := c.roundTrip("GET", get(path))
			if body != "" || resp.Header.Get("Content-Length") != "" || len(resp.TransferEncoding) != 0 {
				t.Fatalf("%s: body %q, header %q", path, body, resp.Header)
			}
			if resp.StatusCode != map[string]int{"/204": 204, "/304": 304, "/204-declared": 204}[path] {
				t.Fatalf("%s: status %d", path, resp.StatusCode)
			}
			if path != "/204-declared" {
				if err := recv(t, writeErrs, "the handler's write"); !errors.Is(err, http.ErrBodyNotAllowed) {
					t.Fatalf("%s: body write returned %v", path, err)
				}
			}
		}
		if _, body := c.roundTrip("GET", get("/small")); body != "hello" {
			t.Fatalf("after 204/304: body %q", body)
		}
	})
}

func TestFlush(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Early", "yes")
		_, _ = io.WriteString(w, "first")
		if r.URL.Path == "/controller" {
			if err := http.NewResponseController(w).Flush(); err != nil {
				panic(err)
			}
		} else {
			w.(http.Flusher).Flush()
		}
		<-release
		_, _ = io.WriteString(w, "second")
	})
	ts := startServer(t, h, nil)
	for _, path := range []string{"/flusher", "/controller"} {
		c := dial(t, ts.addr)
		c.send(get(path))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("%s: reading the header while the handler runs: %v", path, err)
		}
		if resp.Header.Get("X-Early") != "yes" || strings.Join(resp.TransferEncoding, ",") != "chunked" {
			t.Fatalf("%s: header %q, Transfer-Encoding %q", path, resp.Header, resp.TransferEncoding)
		}
		first := make([]byte, 5)
		if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
			t.Fatalf("%s: first chunk %q, %v", path, first, err)
		}
		release <- struct{}{}
		rest, err := io.ReadAll(resp.Body)
		if err != nil || string(rest) != "second" {
			t.Fatalf("%s: rest %q, %v", path, rest, err)
		}
	}
}

func TestTrailers(t *testing.T) {
	big := strings.Repeat("t", 3000)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Declared, X-Unset")
		if r.URL.Query().Get("big") != "" {
			_, _ = io.WriteString(w, big)
		} else {
			_, _ = io.WriteString(w, "small")
		}
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Prefixed", "p")
	})
	ts := startServer(t, h, nil)
	for _, query := range []string{"", "?big=1"} {
		t.Run("body"+query, func(t *testing.T) {
			c := dial(t, ts.addr)
			for range 2 { // the connection stays usable
				resp, body := c.roundTrip("GET", get("/"+query))
				if body != big && body != "small" || strings.Join(resp.TransferEncoding, ",") != "chunked" {
					t.Fatalf("body %q, Transfer-Encoding %q", trunc(body), resp.TransferEncoding)
				}
				if resp.Trailer.Get("X-Declared") != "d" || resp.Trailer.Get("X-Prefixed") != "p" {
					t.Fatalf("trailer %q, header %q", resp.Trailer, resp.Header)
				}
				if resp.Header.Get("X-Declared") != "" || resp.Header.Get("X-Prefixed") != "" {
					t.Fatalf("trailer values in the header: %q", resp.Header)
				}
			}
		})
	}
}

func TestInformational(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "final")
	})
	ts := startServer(t, h, nil)

	t.Run("raw", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(get("/"))
		hints, _ := c.response("GET")
		if hints.StatusCode != http.StatusEarlyHints || hints.Header.Get("Link") != "</style.css>; rel=preload" {
			t.Fatalf("first response %d %q", hints.StatusCode, hints.Header)
		}
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != "final" || resp.Header.Get("Link") != "" {
			t.Fatalf("final response %d %q %q", resp.StatusCode, resp.Header, body)
		}
	})

	t.Run("net/http client", func(t *testing.T) {
		var got []int
		var link string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, code)
			link = h.Get("Link")
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctxWithDeadline(t), trace), "GET", "http://"+ts.addr+"/", nil)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if len(got) != 1 || got[0] != 103 || link == "" || string(b) != "final" {
			t.Fatalf("1xx %v (Link %q), final %d %q", got, link, resp.StatusCode, b)
		}
	})
}

func TestResponseSplitting(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Evil", "a\r\nInjected: 1")
		w.Header().Set("X-Lf", "b\nInjected: 2")
		w.Header()["Bad Name"] = []string{"v"}
		w.Header()["X-Bad\r\nInjected"] = []string{"3"}
		w.Header().Set("Trailer", "X-T, X-Bad\r\nInjected, Bad Name2")
		if r.URL.Query().Get("big") != "" {
			_, _ = io.WriteString(w, strings.Repeat("z", 3000))
		}
		w.Header().Set("X-T", "t\r\nInjected: 4")
		w.Header()["Bad Name2"] = []string{"x"}
		w.Header()[http.TrailerPrefix+"X-P\r\nInjected"] = []string{"5"}
	})
	ts := startServer(t, h, nil)
	for _, path := range []string{"/", "/?big=1"} {
		c := dial(t, ts.addr)
		c.send(get(path))
		// Read the raw response up to the end of the trailer.
		tp := textproto.NewReader(c.br)
		status, err := tp.ReadLine()
		if err != nil || status != "HTTP/1.1 200 OK" {
			t.Fatalf("%s: status line %q, %v", path, status, err)
		}
		lines := readHeaderLines(t, c.br)
		if chunked := lines["Transfer-Encoding"] == "chunked"; chunked {
			skipChunks(t, c.br)
			for k, v := range readHeaderLines(t, c.br) {
				lines["trailer "+k] = v
			}
		} else if n, _ := strconv.Atoi(lines["Content-Length"]); n > 0 {
			_, _ = c.br.Discard(n)
		}
		for k, v := range lines {
			if strings.Contains(k, "Injected") || strings.HasPrefix(k, "Bad") || strings.Contains(k, " Bad") {
				t.Errorf("%s: injected or invalid field %q: %q", path, k, v)
			}
		}
		if lines["X-Evil"] != "a Injected: 1" || lines["X-Lf"] != "b Injected: 2" {
			t.Errorf("%s: fields %q", path, lines)
		}
		// Still in step: the next response parses.
		if resp, _ := c.roundTrip("GET", get("/")); resp.StatusCode != 200 {
			t.Fatalf("%s: next status %d", path, resp.StatusCode)
		}
	}
}

// readHeaderLines reads raw field lines up to an empty line, keyed by the
// text before the first ": ".
func readHeaderLines(t *testing.T, br *bufio.Reader) map[string]string {
	t.Helper()
	m := map[string]string{}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a field line: %v", err)
		}
		if !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("bare LF in %q", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			return m
		}
		k, v, _ := strings.Cut(line, ": ")
		m[k] = v
	}
}

func skipChunks(t *testing.T, br *bufio.Reader) {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a chunk size: %v", err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
		if err != nil {
			t.Fatalf("chunk size %q: %v", line, err)
		}
		if n == 0 {
			return
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			t.Fatal(err)
		}
	}
}
