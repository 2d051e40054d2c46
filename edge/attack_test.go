package edge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// RFC 9110 section 14.2: a server may ignore a Range of many small
// ranges. Thousands of one-byte ranges make a multipart answer many
// times the size of the stored body (a part header per byte); past
// MaxRanges the cache answers the whole 200 instead.
func TestManySmallRangesGetTheWholeBody(t *testing.T) {
	body := strings.Repeat("x", 8<<10)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	})
	f := newFront(t, o, Policy{}, mib, 0)
	f.get(t, "/big")
	var rs []string
	for i := range 2000 {
		rs = append(rs, fmt.Sprintf("%d-%d", 2*i, 2*i))
	}
	resp, got := f.get(t, "/big", "Range", "bytes="+strings.Join(rs, ","))
	wantStatus(t, resp, "switchyard; hit")
	if resp.StatusCode != http.StatusOK || got != body {
		t.Fatalf("2000 ranges: %d, %d bytes for a %d-byte body", resp.StatusCode, len(got), len(body))
	}
	// A handful of ranges is still answered as ranges.
	resp, _ = f.get(t, "/big", "Range", "bytes="+strings.Join(rs[:MaxRanges], ","))
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("%d ranges: %d", MaxRanges, resp.StatusCode)
	}
}

// A response whose Vary names more fields than the cache keeps must not
// be stored: dropping the extra names would hand one user's variant to
// another whose request differs only in a dropped field.
func TestVaryBeyondLimitIsNotStored(t *testing.T) {
	var names []string
	for i := range 16 {
		names = append(names, fmt.Sprintf("X-F%d", i))
	}
	names = append(names, "X-User")
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", strings.Join(names, ", "))
		fmt.Fprint(w, "for "+r.Header.Get("X-User"))
	})
	f := newFront(t, o, Policy{}, mib, 0)
	f.get(t, "/me", "X-User", "alice")
	if _, body := f.get(t, "/me", "X-User", "bob"); body != "for bob" {
		t.Fatalf("bob got %q", body)
	}
}

// FuzzRangeFromStore: whatever the Range (and If-Range) of a request a
// stored response answers, the answer is 200, 206 or 416, and never much
// larger than the stored body (at most MaxRanges part headers on top).
func FuzzRangeFromStore(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=-1", "bytes=0-,0-,0-", "bytes=1-0", "bytes=0-0,2-2,4-4", "bytes=99999999999999999999-", "bytes=-0", "items=0-1", "bytes= 0 - 1 , 3-"} {
		f.Add(s, "")
	}
	f.Add("bytes=0-1", `"e"`)
	body := strings.Repeat("0123456789", 100)
	c, err := New(NewStore(mib, 0), Policy{}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	h := c.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Etag", `"e"`)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "http://edge.test/r", nil))
	f.Fuzz(func(t *testing.T, rg, ifRange string) {
		req := httptest.NewRequest(http.MethodGet, "http://edge.test/r", nil)
		req.Header.Set("Range", rg)
		if ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusPartialContent, http.StatusRequestedRangeNotSatisfiable:
		default:
			t.Fatalf("Range %q: status %d", rg, rec.Code)
		}
		if rec.Body.Len() > len(body)+MaxRanges*256 {
			t.Fatalf("Range %q: %d bytes from a %d-byte body", rg, rec.Body.Len(), len(body))
		}
	})
}
