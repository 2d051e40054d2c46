package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
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

	s := &Server{WriteTimeout: time.Second, ReadHeaderTimeout: time.Second, IdleTimeout: time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Trailer", "X-T")
			_, _ = w.Write([]byte("ok"))
			w.Header().Set("X-T", "1")
		})}
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
	})
}
