package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/upstream"
)

// newTestHandler proxies every request to addr through a real pool (the
// HTTP/1.1 fast path) and logs access records to the returned buffer.
func newTestHandler(t *testing.T, addr string) (*Handler, *upstream.Target, *bytes.Buffer) {
	t.Helper()
	targets := []*upstream.Target{upstream.NewTarget(addr, 0, 1)}
	pol, err := balance.New(balance.Config{}, targets)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := NewPool(PoolConfig{Name: "u", Targets: targets, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var logs bytes.Buffer
	h := New(staticResolver{&Route{Name: "r", Pool: pool}}, Options{AccessLog: slog.New(slog.NewTextHandler(&logs, nil)),
		ErrorLog: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return h, targets[0], &logs
}

// An upstream body that breaks off is recorded as 502 and as a failure of
// the target, also behind a server that does not abort the response.
func TestBrokenUpstreamBodyIsRecordedAsFailure(t *testing.T) {
	b := newScriptedBackend(t, func(c net.Conn, req *http.Request) []byte {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\npartial")
		return nil
	})
	h, target, logs := newTestHandler(t, b.addr)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://gw/broken", nil))
	if !strings.Contains(logs.String(), "status=502") {
		t.Errorf("access log %q, want status=502", logs.String())
	}
	if target.Failures() != 1 {
		t.Errorf("target failures %d, want 1", target.Failures())
	}
}
