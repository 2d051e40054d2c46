package transform

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/retry"
)

// chunked hides a reader's length so the client sends it chunked.
type chunked struct{ io.Reader }

func TestMaxBytes(t *testing.T) {
	const limit = 1000
	tests := []struct {
		name    string
		body    io.Reader // nil: no body
		retry   *retry.Config
		status  int
		code    string
		reached bool
	}{
		{"no body", nil, nil, 200, "", true},
		{"under, content-length", strings.NewReader(strings.Repeat("a", limit)), nil, 200, "", true},
		{"over, content-length", strings.NewReader(strings.Repeat("a", limit+1)), nil, 413, "body_too_large", false},
		{"under, chunked", chunked{strings.NewReader(strings.Repeat("a", limit))}, nil, 200, "", true},
		// The upstream request fails mid-body; the proxy reports the 413.
		{"over, chunked", chunked{strings.NewReader(strings.Repeat("a", 100*limit))}, nil, 413, "body_too_large", false},
		// With retries the proxy buffers the body first and reports its
		// own 400 (see MaxBytes).
		{"over, chunked, retries", chunked{strings.NewReader(strings.Repeat("a", 2*limit))}, &retry.Config{Attempts: 2}, 413, "body_too_large", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reached atomic.Bool
			backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n, err := io.Copy(io.Discard, r.Body)
				if err != nil {
					return // the proxy aborted the upload
				}
				reached.Store(true)
				if n > limit {
					t.Errorf("backend read %d bytes, limit %d", n, limit)
				}
			})
			url := newGateway(t, &proxy.Route{Middleware: []httpx.Middleware{MaxBytes(limit)}}, tt.retry, backend)
			var body io.Reader
			if tt.body != nil {
				body = tt.body
			}
			req, _ := http.NewRequest("POST", url+"/upload", body)
			resp, got := do(t, req)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, got)
			}
			if tt.code != "" {
				if c := gatewayError(t, got); c != tt.code {
					t.Errorf("code %q, want %q", c, tt.code)
				}
			}
			if reached.Load() != tt.reached {
				t.Errorf("backend got the whole request: %v, want %v", reached.Load(), tt.reached)
			}
		})
	}
}
