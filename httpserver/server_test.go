package httpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestKeepAlive(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})
	ts := startServer(t, h, nil)

	t.Run("several requests on one connection", func(t *testing.T) {
		c := dial(t, ts.addr)
		for i := range 5 {
			path := fmt.Sprintf("/r%d", i)
			resp, body := c.roundTrip("GET", get(path))
			if resp.StatusCode != 200 || body != path || resp.Close {
				t.Fatalf("request %d: status %d, body %q, close %v", i, resp.StatusCode, body, resp.Close)
			}
			if resp.ContentLength != int64(len(path)) {
				t.Fatalf("request %d: Content-Length %d, want %d", i, resp.ContentLength, len(path))
			}
		}
	})

	t.Run("HTTP/1.0 closes", func(t *testing.T) {
		c := dial(t, ts.addr)
		resp, body := c.roundTrip("GET", "GET /a HTTP/1.0\r\n\r\n")
		if body != "/a" || !resp.Close {
			t.Fatalf("body %q, close %v", body, resp.Close)
		}
		c.expectClosed()
	})

	t.Run("HTTP/1.0 keep-alive stays open", func(t *testing.T) {
		c := dial(t, ts.addr)
		for i := range 3 {
			resp, body := c.roundTrip("GET", "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			if body != "/k" || resp.Close || resp.Header.Get("Connection") != "keep-alive" {
				t.Fatalf("request %d: body %q, close %v, Connection %q", i, body, resp.Close, resp.Header.Get("Connection"))
			}
		}
	})

	t.Run("client Connection: close", func(t *testing.T) {
		c := dial(t, ts.addr)
		resp, body := c.roundTrip("GET", "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if body != "/c" || !resp.Close {
			t.Fatalf("body %q, close %v", body, resp.Close)
		}
		c.expectClosed()
	})

	t.Run("handler Connection: close", func(t *testing.T) {
		c := dial(t, ts.addr)
		resp, body := c.roundTrip("GET", get("/close"))
		if body != "/close" || !resp.Close {
			t.Fatalf("body %q, close %v", body, resp.Close)
		}
		c.expectClosed()
	})
}

func TestPipelining(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	})
	ts := startServer(t, h, nil)
	c := dial(t, ts.addr)
	c.send(get("/one") +
		"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody" +
		"POST /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n")
	for _, want := range []string{"GET /one ", "POST /two body", "POST /three ab"} {
		if _, body := c.response("GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

// TestPipeliningWatchedByte sends the next request while the watcher
// reads the connection: the byte it takes must not be lost.
func TestPipeliningWatchedByte(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})
	ts := startServer(t, h, func(s *Server) { s.WatchAfter = -1 })
	c := dial(t, ts.addr)
	c.send(get("/slow"))
	recv(t, started, "the handler to start")
	sc := ts.onlyConn(t)
	c.send(get("/next") + get("/last"))
	waitFor(t, "the watcher to read a byte", sc.hasPendingByte)
	close(release)
	for _, want := range []string{"/slow", "/next", "/last"} {
		if _, body := c.response("GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

func TestShutdown(t *testing.T) {
	t.Run("idle connections close at once", func(t *testing.T) {
		ts := startServer(t, echoPath, nil)
		used := dial(t, ts.addr)
		used.roundTrip("GET", get("/"))
		fresh := dial(t, ts.addr)
		ts.onlyConnCount(t, 2)
		if err := ts.Shutdown(ctxWithDeadline(t)); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		used.expectClosed()
		fresh.expectClosed()
		if err := ts.waitServed(t); !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve returned %v", err)
		}
	})

	t.Run("request in progress completes", func(t *testing.T) {
		started, release := make(chan struct{}), make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
			_, _ = io.WriteString(w, "done")
		})
		ts := startServer(t, h, nil)
		c := dial(t, ts.addr)
		c.send(get("/"))
		recv(t, started, "the handler to start")
		shut := make(chan error, 1)
		go func() { shut <- ts.Shutdown(ctxWithDeadline(t)) }()
		if err := ts.waitServed(t); !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve returned %v", err)
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v with a request in progress", err)
		default:
		}
		close(release)
		resp, body := c.response("GET")
		if body != "done" || !resp.Close {
			t.Fatalf("body %q, close %v", body, resp.Close)
		}
		c.expectClosed()
		if err := recv(t, shut, "Shutdown"); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})

	t.Run("expired context then Close", func(t *testing.T) {
		started, release := make(chan struct{}), make(chan struct{})
		defer close(release)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
		})
		ts := startServer(t, h, nil)
		c := dial(t, ts.addr)
		c.send(get("/"))
		recv(t, started, "the handler to start")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := ts.Shutdown(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown returned %v, want context.Canceled", err)
		}
		if err := ts.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		c.expectClosed()
	})

	t.Run("Serve after Shutdown", func(t *testing.T) {
		s := &Server{Handler: echoPath}
		if err := s.Shutdown(ctxWithDeadline(t)); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve returned %v", err)
		}
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Fatalf("Serve left the listener open")
		}
	})
}

// onlyConnCount waits until the server tracks n connections.
func (ts *testServer) onlyConnCount(t testing.TB, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d tracked connections", n), func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return len(ts.conns) == n
	})
}

func TestTimeouts(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		ts := startServer(t, echoPath, func(s *Server) { s.IdleTimeout = 20 * time.Millisecond })
		c := dial(t, ts.addr)
		c.roundTrip("GET", get("/"))
		c.expectClosed()
	})
	t.Run("read header", func(t *testing.T) {
		ts := startServer(t, echoPath, func(s *Server) { s.ReadHeaderTimeout = 20 * time.Millisecond })
		// Half a request line: closed without an answer (net/http parses
		// the partial line as a whole one and answers 400).
		c := dial(t, ts.addr)
		c.send("GET /half-a-req")
		c.expectClosed()
		// Half a header: closed without an answer.
		c = dial(t, ts.addr)
		c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Half: a")
		c.expectClosed()
	})
}

func TestPanics(t *testing.T) {
	var log logBuffer
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/abort":
			_, _ = io.WriteString(w, "partial")
			panic(http.ErrAbortHandler)
		}
		_, _ = io.WriteString(w, "ok")
	})
	ts := startServer(t, h, func(s *Server) { s.ErrorLog = log.logger() })
	survivor := dial(t, ts.addr)
	survivor.roundTrip("GET", get("/"))

	c := dial(t, ts.addr)
	c.send(get("/abort"))
	c.expectClosed()
	if s := log.String(); s != "" {
		t.Fatalf("http.ErrAbortHandler was logged: %s", s)
	}

	c = dial(t, ts.addr)
	c.send(get("/panic"))
	c.expectClosed()
	if s := log.String(); !strings.Contains(s, "panic serving a request") || !strings.Contains(s, "boom") {
		t.Fatalf("panic not logged: %q", s)
	}

	for _, c := range []*rawConn{survivor, dial(t, ts.addr)} {
		if _, body := c.roundTrip("GET", get("/")); body != "ok" {
			t.Fatalf("after a panic: body %q", body)
		}
	}
}

func TestConcurrentClients(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Query().Get("big") != "" {
			_, _ = io.WriteString(w, strings.Repeat("x", 5000))
		}
		fmt.Fprintf(w, "%s|%s|%s", r.URL.Path, r.URL.RawQuery, b)
	})
	ts := startServer(t, h, nil)
	tr := &http.Transport{MaxIdleConnsPerHost: 50}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: testDeadline}

	const clients, requests = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for g := range clients {
		wg.Go(func() {
			for i := range requests {
				path := fmt.Sprintf("/c%d/r%d", g, i)
				query := ""
				var resp *http.Response
				var err error
				want := ""
				switch i % 3 {
				case 0:
					resp, err = client.Get("http://" + ts.addr + path)
					want = path + "||"
				case 1:
					body := strings.Repeat("b", i*100)
					resp, err = client.Post("http://"+ts.addr+path, "text/plain", strings.NewReader(body))
					want = path + "||" + body
				case 2:
					query = "big=1"
					resp, err = client.Get("http://" + ts.addr + path + "?" + query)
					want = strings.Repeat("x", 5000) + path + "|" + query + "|"
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", path, err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil || string(b) != want {
					errs <- fmt.Errorf("%s: body %q (err %v), want %q", path, trunc(string(b)), err, trunc(want))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPipelinedThenHalfClosed pipelines two requests and half-closes: the
// watcher sees the end of the client's stream (the request's context is
// cancelled, as net/http's), yet the client still gets both answers.
func TestPipelinedThenHalfClosed(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			<-r.Context().Done()
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})
	ts := startServer(t, h, func(s *Server) { s.WatchAfter = -1 })
	c := dial(t, ts.addr)
	c.send(get("/first") + get("/second"))
	_ = c.nc.(*net.TCPConn).CloseWrite()
	for _, want := range []string{"/first", "/second"} {
		if _, body := c.response("GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
	c.expectClosed()
}
