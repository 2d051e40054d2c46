package edge

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
)

func newCompressFront(t *testing.T, o *origin, comp *Compress) *front {
	t.Helper()
	u, _ := url.Parse(o.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{DisableCompression: true} // the origin's codings pass as they are
	c, err := New(NewStore(1<<20, 0), Policy{}, Options{Compress: comp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv := httptest.NewServer(c.Middleware()(rp))
	t.Cleanup(srv.Close)
	return &front{c: c, srv: srv}
}

func decode(t *testing.T, enc, body string) string {
	t.Helper()
	var r io.Reader
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(strings.NewReader(body))
	case "":
		return body
	default:
		t.Fatalf("unexpected Content-Encoding %q", enc)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", enc, err)
	}
	return string(b)
}

func hasVaryAE(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		if strings.Contains(strings.ToLower(v), "accept-encoding") {
			return true
		}
	}
	return false
}

// A compressible stored response is sent in the coding each client
// prefers, compressed once per coding, with a suffixed ETag, Vary:
// Accept-Encoding and the encoded length; conditionals and Range work
// against the variants.
func TestCompressVariants(t *testing.T) {
	page := strings.Repeat("<p>hello compressible world</p>\n", 200)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, page)
	})
	f := newCompressFront(t, o, &Compress{Gzip: true, Brotli: true})
	resp, body := f.do(t, "GET", "/p", "Accept-Encoding", "gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Etag") != `"v1-gzip"` || !hasVaryAE(resp.Header) ||
		decode(t, "gzip", body) != page || !strings.HasSuffix(resp.Header.Get("Cache-Status"), "stored") {
		t.Fatalf("miss: encoding %q, etag %s, vary %q, %d bytes, %q", resp.Header.Get("Content-Encoding"), resp.Header.Get("Etag"),
			resp.Header.Values("Vary"), len(body), resp.Header.Get("Cache-Status"))
	}
	resp, body = f.do(t, "GET", "/q", "Accept-Encoding", "br;q=0.9, gzip;q=0.1")
	if resp.Header.Get("Content-Encoding") != "br" || decode(t, "br", body) != page {
		t.Fatalf("brotli miss: encoding %q", resp.Header.Get("Content-Encoding"))
	}
	resp, body = f.do(t, "GET", "/r")
	if resp.Header.Get("Content-Encoding") != "" || body != page || !hasVaryAE(resp.Header) {
		t.Fatalf("identity miss: encoding %q, vary %q", resp.Header.Get("Content-Encoding"), resp.Header.Values("Vary"))
	}
	before := f.c.Store().Stats().Bytes
	cases := []struct{ ae, want, etag string }{
		{"gzip", "gzip", `"v1-gzip"`},
		{"br", "br", `"v1-br"`},
		{"gzip, deflate, br", "br", `"v1-br"`},
		{"br;q=0.5, gzip", "gzip", `"v1-gzip"`},
		{"GZIP;Q=0.8, br;q=0.8", "br", `"v1-br"`},
		{"x-gzip", "gzip", `"v1-gzip"`},
		{"*", "br", `"v1-br"`},
		{"*;q=0.1, br;q=0", "gzip", `"v1-gzip"`},
		{"identity", "", `"v1"`},
		{"gzip;q=0, br;q=0", "", `"v1"`},
		{"gzip;q=2", "", `"v1"`}, // malformed qvalue: ignored
		{"", "", `"v1"`},
	}
	for _, c := range cases {
		var resp *http.Response
		var body string
		if c.ae == "" {
			resp, body = f.do(t, "GET", "/p")
		} else {
			resp, body = f.do(t, "GET", "/p", "Accept-Encoding", c.ae)
		}
		enc := resp.Header.Get("Content-Encoding")
		if enc != c.want || resp.Header.Get("Etag") != c.etag || !hasVaryAE(resp.Header) ||
			resp.Header.Get("Cache-Status") != "switchyard; hit" {
			t.Errorf("Accept-Encoding %q: encoding %q etag %s vary %q status %q; want %q %s",
				c.ae, enc, resp.Header.Get("Etag"), resp.Header.Values("Vary"), resp.Header.Get("Cache-Status"), c.want, c.etag)
			continue
		}
		if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
			t.Errorf("Accept-Encoding %q: Content-Length %s for %d bytes", c.ae, cl, len(body))
		}
		if c.want != "" && len(body) >= len(page)/2 {
			t.Errorf("Accept-Encoding %q: %d bytes is hardly compressed (%d)", c.ae, len(body), len(page))
		}
		if got := decode(t, enc, body); got != page {
			t.Errorf("Accept-Encoding %q: decoded body differs (%d bytes)", c.ae, len(got))
		}
	}
	if n := o.n.Load(); n != 3 {
		t.Errorf("origin asked %d times, want 3 (one per path)", n)
	}
	if after := f.c.Store().Stats().Bytes; after <= before {
		t.Errorf("store bytes %d after building variants, %d before: variants are not charged", after, before)
	}
	// Conditionals against a variant's tag, and the identity tag.
	for _, inm := range []string{`"v1-gzip"`, `W/"v1-gzip"`, `"v1"`} {
		resp, body = f.do(t, "GET", "/p", "Accept-Encoding", "gzip", "If-None-Match", inm)
		if resp.StatusCode != 304 || body != "" {
			t.Errorf("If-None-Match %s: %d with %d bytes, want 304", inm, resp.StatusCode, len(body))
		}
	}
	resp, _ = f.do(t, "GET", "/p", "Accept-Encoding", "gzip", "If-None-Match", `"v1-br"`)
	if resp.StatusCode != 200 {
		t.Errorf("If-None-Match of another variant: %d, want 200", resp.StatusCode)
	}
	// Range: served from the identity body.
	resp, body = f.do(t, "GET", "/p", "Accept-Encoding", "gzip, br", "Range", "bytes=3-9")
	if resp.StatusCode != 206 || body != page[3:10] || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("range: %d %q encoding %q", resp.StatusCode, body, resp.Header.Get("Content-Encoding"))
	}
	// HEAD carries the variant's headers.
	resp, body = f.do(t, "HEAD", "/p", "Accept-Encoding", "gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || body != "" {
		t.Errorf("HEAD: encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(body))
	}
}

// What is not compressed: small bodies, other types, bodies the origin
// encoded, no-transform, and encodings the config does not enable.
func TestCompressSkips(t *testing.T) {
	big := strings.Repeat("abcdefgh", 512)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "max-age=300")
		h.Set("Content-Type", "text/plain")
		body := big
		switch r.URL.Path {
		case "/small":
			body = big[:100]
		case "/png":
			h.Set("Content-Type", "image/png")
		case "/gz":
			h.Set("Content-Encoding", "gzip")
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write([]byte(big))
			zw.Close()
			body = b.String()
		case "/nt":
			h.Set("Cache-Control", "max-age=300, no-transform")
		}
		io.WriteString(w, body)
	})
	f := newCompressFront(t, o, &Compress{Gzip: true, Types: []string{"text/plain"}, MinSize: 200})
	for _, p := range []string{"/small", "/png", "/gz", "/nt"} {
		f.do(t, "GET", p)
		resp, _ := f.do(t, "GET", p, "Accept-Encoding", "gzip, br")
		if resp.Header.Get("Cache-Status") != "switchyard; hit" {
			t.Fatalf("%s: not a hit: %q", p, resp.Header.Get("Cache-Status"))
		}
		want := ""
		if p == "/gz" {
			want = "gzip" // the origin's own
		}
		if ce := resp.Header.Get("Content-Encoding"); ce != want || hasVaryAE(resp.Header) {
			t.Errorf("%s: Content-Encoding %q, Vary %q; want %q and no Vary", p, ce, resp.Header.Values("Vary"), want)
		}
	}
	f.do(t, "GET", "/plain")
	resp, _ := f.do(t, "GET", "/plain", "Accept-Encoding", "br")
	if ce := resp.Header.Get("Content-Encoding"); ce != "" || !hasVaryAE(resp.Header) {
		t.Errorf("brotli disabled: Content-Encoding %q", ce)
	}
	resp, _ = f.do(t, "GET", "/plain", "Accept-Encoding", "br;q=1, gzip;q=0.1")
	if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Errorf("gzip only: Content-Encoding %q", ce)
	}
}

func TestCompressConfigErrors(t *testing.T) {
	cfg := Config{Memory: 1 << 20, Compress: &Compress{Types: []string{"text", "a/b c"}, MinSize: -1}}
	err := cfg.Validate()
	for _, want := range []string{"compress: enables no encoding", "compress.types[0]: \"text\" is not a media type", "compress.types[1]", "compress.min_size: must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v; want %q", err, want)
		}
	}
	if _, err := New(NewStore(1<<20, 0), Policy{}, Options{Compress: &Compress{}}); err == nil {
		t.Error("New accepted a compress block enabling nothing")
	}
}

func TestChooseEncoding(t *testing.T) {
	cases := map[string]int{
		"": encIdentity, "gzip": encGzip, "br": encBrotli, "gzip, br": encBrotli, "gzip;q=1.0, br;q=0.999": encGzip,
		"br;q=0": encIdentity, "*;q=0": encIdentity, "identity;q=0": encIdentity, "br;q=0.": encIdentity, "br;q=0.5": encBrotli,
		"br;q=1.001": encIdentity, "br;q=0.0001": encIdentity, "br ; q = 0.5 , gzip ; q=0.4": encBrotli,
		",,,": encIdentity, "gzip;level=9": encGzip, "br;q=-1": encIdentity, "deflate": encIdentity,
	}
	for in, want := range cases {
		var lines []string
		if in != "" {
			lines = []string{in}
		}
		if got := chooseEncoding(lines, true, true); got != want {
			t.Errorf("chooseEncoding(%q) = %d, want %d", in, got, want)
		}
	}
}

// FuzzAcceptEncoding: the parser never panics, and never picks a coding
// the header does not name (directly, as x-gzip, or through *).
func FuzzAcceptEncoding(f *testing.F) {
	for _, s := range []string{"gzip", "br;q=0.5, gzip;q=0.6", "*;q=0", "identity", "x-gzip;q=1.000", "br;q=", ";;;,,=q", "gzip;q=0.5;q=0.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := chooseEncoding([]string{s}, true, true)
		low := strings.ToLower(s)
		switch got {
		case encBrotli:
			if !strings.Contains(low, "br") && !strings.Contains(low, "*") {
				t.Fatalf("%q: chose br", s)
			}
		case encGzip:
			if !strings.Contains(low, "gzip") && !strings.Contains(low, "*") {
				t.Fatalf("%q: chose gzip", s)
			}
		case encIdentity:
		default:
			t.Fatalf("%q: chose %d", s, got)
		}
		if chooseEncoding([]string{s}, false, false) != encIdentity {
			t.Fatalf("%q: chose a disabled coding", s)
		}
	})
}
