package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzServerFrames feeds arbitrary bytes after the preface to a server
// whose handler reads the body and answers with trailers: the server must
// neither panic nor hang (every connection ends once the client stops),
// and keeps serving other connections.
func FuzzServerFrames(f *testing.F) {
	// seeds: a valid exchange, and its frames cut and repeated
	var b bytes.Buffer
	fr := http2.NewFramer(&b, nil)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/a"}, {"content-length", "3"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	_ = fr.WriteData(1, false, []byte("ab"))
	_ = fr.WriteWindowUpdate(0, 100)
	_ = fr.WriteWindowUpdate(1, 100)
	_ = fr.WritePing(false, [8]byte{1})
	_ = fr.WriteData(1, true, []byte("c"))
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndHeaders: false})
	_ = fr.WriteContinuation(3, true, []byte{0x82})
	_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
	_ = fr.WritePriority(5, http2.PriorityParam{StreamDep: 5})
	_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	valid := b.Bytes()
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(append(bytes.Clone(valid), valid...))
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
	// the same exchange on the paths whose handlers read the body
	// otherwise (see below)
	for _, p := range []string{"/b", "/c", "/d"} {
		f.Add(bytes.ReplaceAll(valid, []byte("/a"), []byte(p)))
	}

	s := &Server{WriteTimeout: time.Second, ReadHeaderTimeout: time.Second, IdleTimeout: time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/b": // answers without reading
				w.WriteHeader(http.StatusUnauthorized)
				return
			case "/c": // reads a little, closes the body
				_, _ = r.Body.Read(make([]byte, 1))
				_ = r.Body.Close()
			case "/d": // reads a little, answers, leaves the rest
				_, _ = r.Body.Read(make([]byte, 2))
			default:
				_, _ = io.Copy(io.Discard, r.Body)
			}
			w.Header().Set("Trailer", "X-T")
			_, _ = w.Write([]byte("ok"))
			w.Header().Set("X-T", "1")
		})}
	// Each connection's receive window accounting is checked as it ends.
	var broken atomic.Pointer[error]
	hook := func(c *conn) {
		if err := windowInvariant(c); err != nil {
			broken.CompareAndSwap(nil, &err)
		}
	}
	testHookTeardown.Store(&hook)
	f.Cleanup(func() { testHookTeardown.Store(nil) })
	addr := start(f, s)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			_, _ = c.Write(preface)
			_, _ = c.Write(data)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		// The server ends the connection: after our end of input it
		// sees EOF, or it refuses the input earlier.
		if _, err := io.Copy(io.Discard, c); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("connection not ended 10s after the input")
			}
		}
		// The server's side ended too (its teardown checked the window).
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			s.mu.Lock()
			n := len(s.conns)
			s.mu.Unlock()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the server's connection not ended 10s after the client's")
			}
		}
		if err := broken.Load(); err != nil {
			t.Fatal(*err)
		}
	})
}
