package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
	"github.com/switchyard/switchyard/httpx"
)

// Listings come in pages of ListMax with a Link rel="next"; the client
// follows them and returns every name once; ?limit= asks for smaller
// pages; a page answers 304 to its ETag; a bad limit or cursor is 400
// naming it.
func TestHTTPListPages(t *testing.T) {
	ctx := context.Background()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewWithOptions(b, httpapi.Options{ListMax: 3}))
	t.Cleanup(func() { srv.Close(); b.Close() })
	h := &HTTP{Base: srv.URL}
	var want []string
	for i := range 7 {
		name := fmt.Sprintf("s%02d", i)
		if err := h.DeclareStream(ctx, name, broker.StreamConfig{}); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	got, err := h.Streams(ctx)
	if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Streams over pages of 3: %v %v", got, err)
	}

	get := func(path string, hdr ...string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	resp, body := get("/v1/streams?limit=2")
	next := httpx.NextLink(resp.Header.Values("Link"))
	if resp.StatusCode != 200 || body != `{"streams":["s00","s01"]}`+"\n" || !strings.HasPrefix(next, "/v1/streams?cursor=") || !strings.Contains(next, "limit=2") {
		t.Fatalf("first page: %d %q Link %q", resp.StatusCode, body, resp.Header.Get("Link"))
	}
	resp, body = get(next)
	if body != `{"streams":["s02","s03"]}`+"\n" {
		t.Fatalf("second page: %q", body)
	}
	etag := resp.Header.Get("ETag")
	if resp, _ := get(next, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match of the same page: %d", resp.StatusCode)
	}
	if err := h.DeclareStream(ctx, "s025", broker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(next, "If-None-Match", etag); resp.StatusCode != 200 || body != `{"streams":["s02","s025"]}`+"\n" {
		t.Fatalf("If-None-Match after a change: %d %q", resp.StatusCode, body)
	}
	resp, body = get("/v1/streams?limit=7")
	if resp.StatusCode != 400 || !strings.Contains(body, `query parameter limit \"7\": expected a whole number from 1 to 3`) {
		t.Fatalf("limit above the maximum: %d %s", resp.StatusCode, body)
	}
	resp, body = get("/v1/queues?cursor=" + httpx.EncodeCursor("stream", "s01"))
	if resp.StatusCode != 400 || !strings.Contains(body, "a cursor of another list") || !strings.Contains(body, `"code":"bad_request"`) {
		t.Fatalf("a streams cursor on queues: %d %s", resp.StatusCode, body)
	}
	resp, body = get("/v1/topics")
	if resp.StatusCode != 200 || body != `{"topics":[]}`+"\n" || resp.Header.Get("Link") != "" {
		t.Fatalf("an empty listing: %d %q %q", resp.StatusCode, body, resp.Header.Get("Link"))
	}
}
