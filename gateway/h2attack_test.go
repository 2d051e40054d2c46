package gateway

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestSwitchyardHTTP2NoSmuggling: through server.http2: switchyard to an
// HTTP/1.1 backend, a request body that contradicts its content-length
// (longer, or shorter then END_STREAM), a body that looks like a chunked
// terminator and a second request, and a trailer carrying framing fields
// never make the backend see a second request; a later request on the
// same gateway is answered as usual.
func TestSwitchyardHTTP2NoSmuggling(t *testing.T) {
	testHTTP2 = "switchyard"
	defer func() { testHTTP2 = "" }()
	b := newBackend(t, "b")
	var mu sync.Mutex
	var paths []string
	b.handle(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		for k := range r.Trailer {
			if k == "Content-Length" || k == "Transfer-Encoding" {
				t.Errorf("backend got trailer %s", k)
			}
		}
		_, _ = w.Write(body)
	})
	r := startGateway(t, "h2c: true\n"+e2eConfig{addrs: []string{b.addr()}}.String())
	nc, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func(kv ...string) []byte {
		hb.Reset()
		for i := 0; i < len(kv); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return bytes.Clone(hb.Bytes())
	}
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	head := func(id uint32, path string, extra ...string) {
		f := append([]string{":method", "POST", ":scheme", "http", ":authority", "gw.test", ":path", path}, extra...)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block(f...), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	data := func(id uint32, end bool, s string) {
		if err := fr.WriteData(id, end, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	// done waits until stream id ended: END_STREAM or RST_STREAM.
	done := func(id uint32) {
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("stream %d: %v", id, err)
			}
			if f.Header().StreamID == id && (f.Header().Flags.Has(http2.FlagDataEndStream) || f.Header().Type == http2.FrameRSTStream) {
				return
			}
			if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
				_ = fr.WritePing(true, p.Data)
			}
		}
	}
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: b\r\n\r\n"
	// Longer than declared.
	head(1, "/long", "content-length", "5")
	data(1, true, "hello"+smuggled)
	done(1)
	// Shorter than declared, the rest a request.
	head(3, "/short", "content-length", "200")
	data(3, false, "hello")
	data(3, true, smuggled)
	done(3)
	// No length: chunked to the backend; a terminator in the body is data.
	head(5, "/chunked")
	data(5, true, "0\r\n\r\n"+smuggled)
	done(5)
	// Framing fields in the trailer.
	for _, id := range []uint32{7, 9} {
		head(id, "/trailer", "trailer", "x-t")
		data(id, false, "hello")
		name := map[uint32]string{7: "content-length", 9: "transfer-encoding"}[id]
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block(name, "0"), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		done(id)
	}
	// A plain request afterwards.
	head(11, "/after", "content-length", "2")
	data(11, true, "ok")
	done(11)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("backend requests %v", paths)
	for _, p := range paths {
		if p == "/smuggled" {
			t.Fatalf("the backend saw a smuggled request: %v", paths)
		}
	}
	if len(paths) == 0 || paths[len(paths)-1] != "/after" {
		t.Fatalf("backend requests %v, want /after last", paths)
	}
}
