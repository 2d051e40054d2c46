package edge

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// A stored body is held in a slice of exactly its length, whether the
// origin declared the length or sent it chunked: spare capacity would
// stay allocated for as long as the entry is cached.
func TestStoredBodyExactlySized(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 100<<10/16)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		if r.URL.Path == "/sized" {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		}
		for i := 0; i < len(big); i += 3000 { // many small writes
			io.WriteString(w, big[i:min(i+3000, len(big))])
			if r.URL.Path == "/chunked" {
				w.(http.Flusher).Flush()
			}
		}
	})
	f := newFront(t, o, Policy{}, 16*mib, 0)
	for _, p := range []string{"/chunked", "/sized"} {
		if _, body := f.get(t, p); body != big {
			t.Fatalf("%s: miss body of %d bytes", p, len(body))
		}
		resp, body := f.get(t, p)
		wantStatus(t, resp, "switchyard; hit")
		if body != big {
			t.Fatalf("%s: hit body of %d bytes", p, len(body))
		}
		var kb [256]byte
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+p, nil)
		e, _ := f.c.store.lookup(buildKey(kb[:0], f.c.key, req), req)
		if e == nil {
			t.Fatalf("%s: not in the store", p)
		}
		if len(e.body) != len(big) || cap(e.body) != len(e.body) {
			t.Fatalf("%s: stored body len %d cap %d, want both %d", p, len(e.body), cap(e.body), len(big))
		}
	}
}

// An origin declaring a Content-Length it does not send (more bytes than
// it has, or a huge length) gets nothing stored; the declared length only
// sizes the copy up to maxPrealloc.
func TestDeclaredLengthNotTrusted(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		switch r.URL.Path {
		case "/short":
			w.Header().Set("Content-Length", "5000")
			io.WriteString(w, "only this")
		case "/huge":
			w.Header().Set("Content-Length", strconv.Itoa(8*mib)) // within max_object, over maxPrealloc
			chunk := strings.Repeat("h", 64<<10)
			for range 8 * mib / len(chunk) {
				io.WriteString(w, chunk)
			}
		}
	})
	f := newFront(t, o, Policy{}, 64*mib, 16*mib)
	for range 2 {
		// The client sees the answer break off: no error to check here.
		if resp, err := noRedirect.Get(f.srv.URL + "/short"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	if n := o.n.Load(); n != 2 {
		t.Fatalf("a truncated body was stored: origin asked %d times, want 2", n)
	}
	if s := f.c.Store().Stats(); s.Entries != 0 {
		t.Fatalf("entries %d after truncated answers", s.Entries)
	}
	f.get(t, "/huge")
	resp, body := f.get(t, "/huge")
	wantStatus(t, resp, "switchyard; hit")
	if len(body) != 8*mib {
		t.Fatalf("huge: %d bytes", len(body))
	}
	var kb [256]byte
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/huge", nil)
	if e, _ := f.c.store.lookup(buildKey(kb[:0], f.c.key, req), req); e == nil || cap(e.body) != len(e.body) {
		t.Fatalf("huge: entry %v", e != nil)
	}
}
