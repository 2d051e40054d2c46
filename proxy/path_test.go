package proxy

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/route"
	"github.com/switchyard/switchyard/upstream"
)

// prefixResolver sends /admin to admin and everything else to public, as
// a route table with path_prefix /admin first and a catch-all would.
type prefixResolver struct{ admin, public *Route }

func (p prefixResolver) Resolve(r *http.Request) (*Route, bool) {
	if route.HasPathPrefix(r.URL.Path, "/admin") {
		return p.admin, true
	}
	return p.public, true
}

// rawExchange sends one raw request to addr and returns the response.
func rawExchange(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// prefixServer serves a handler with an /admin route whose middleware
// refuses every request (401) and a catch-all route, both to backend.
func prefixServer(t *testing.T, backend string) string {
	targets := []*upstream.Target{upstream.NewTarget(backend, 0, 1)}
	pol, err := balance.New(balance.Config{}, targets)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := NewPool(PoolConfig{Name: "u", Targets: targets, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	deny := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no credentials", http.StatusUnauthorized)
		})
	}
	admin := &Route{Name: "admin", Pool: pool, Middleware: []httpx.Middleware{deny}}
	public := &Route{Name: "public", Pool: pool}
	h := New(prefixResolver{admin, public}, Options{ErrorLog: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h.Prepare(admin)
	h.Prepare(public)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")

}

// A path with dot segments ("/x/../admin", also percent-encoded or with
// an encoded slash or a backslash) is matched against the routes as
// written, but most backends resolve it: it would reach /admin on the
// backend through a route without /admin's access control. Such paths
// are refused (no browser or HTTP library sends them: RFC 3986 5.2.4 has
// the client remove dot segments) and never go upstream.
func TestDotSegmentsCannotBypassRoutes(t *testing.T) {
	var (
		mu      sync.Mutex
		reached []string
	)
	b := newScriptedBackend(t, func(c net.Conn, req *http.Request) []byte {
		mu.Lock()
		defer mu.Unlock()
		reached = append(reached, req.RequestURI)
		return echoResponse(req)
	})
	addr := prefixServer(t, b.addr)

	for _, path := range []string{
		"/x/../admin/users", "/x/%2e%2e/admin/users", "/x/%2E%2E/admin", "/x%2f..%2fadmin/users",
		"/./admin/users", "/x/.%2e/admin", "/x\\..\\admin", "/x/..", "/admin/../x", "/x/.",
		"http://h/x/../admin",
	} {
		resp := rawExchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: status %d, want 400", path, resp.StatusCode)
		}
	}
	mu.Lock()
	if len(reached) > 0 {
		t.Errorf("paths with dot segments reached the backend: %q", reached)
	}
	mu.Unlock()
	// Dots inside a segment are ordinary.
	for _, path := range []string{"/x/..a/b", "/x/a../b", "/x/.well-known/y", "/x/...", "/x?a=/../admin"} {
		if resp := rawExchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", path, resp.StatusCode)
		}
	}
}

// FuzzRefusePath: merged slashes leave no "//" in what goes upstream and
// keep its path and escaped path in step; a path refusePath lets through has no dot segment, so
// resolving dot segments (path.Clean, with backslashes as slashes) changes
// no more than repeated and trailing slashes.
func FuzzRefusePath(f *testing.F) {
	for _, s := range []string{"/a/../b", "/a/./b", "/a/..b", "/..", "/a\\..\\b", "/%2e%2e/", "/a//b/", "/.well-known/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI("/" + target)
		if err != nil {
			return
		}
		r := &http.Request{URL: u}
		rawBefore := u.EscapedPath()
		mergeSlashes(r)
		esc := u.EscapedPath()
		if strings.Contains(esc, "//") || (!strings.Contains(rawBefore, "//") && esc != rawBefore) {
			t.Fatalf("merging slashes in %q gave %q", rawBefore, esc)
		}
		if p, err := url.PathUnescape(esc); err != nil || p != u.Path {
			t.Fatalf("merged %q: path %q, escaped %q", rawBefore, u.Path, esc)
		}
		if refusePath(r) != nil {
			return
		}
		p := strings.ReplaceAll(u.Path, "\\", "/")
		collapsed := "/" + strings.Join(strings.FieldsFunc(p, func(c rune) bool { return c == '/' }), "/")
		if got := path.Clean(p); got != collapsed {
			t.Fatalf("accepted %q: resolves to %q, not %q", u.Path, got, collapsed)
		}
	})
}

// Repeated slashes are merged before routing (as nginx's default
// merge_slashes does): "//admin" is the /admin route's, not a way around
// its access control to a backend that merges them itself.
func TestRepeatedSlashesAreMergedBeforeRouting(t *testing.T) {
	var (
		mu      sync.Mutex
		reached []string
	)
	b := newScriptedBackend(t, func(c net.Conn, req *http.Request) []byte {
		mu.Lock()
		defer mu.Unlock()
		reached = append(reached, req.RequestURI)
		return echoResponse(req)
	})
	addr := prefixServer(t, b.addr)
	for path, want := range map[string]int{
		"//admin/users": http.StatusUnauthorized, "///admin": http.StatusUnauthorized,
		"/admin//users": http.StatusUnauthorized, "//x//y//?q=//": http.StatusOK,
		"/x%2F%2Fy//z": http.StatusOK,
	} {
		if resp := rawExchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != want {
			t.Errorf("GET %s: status %d, want %d", path, resp.StatusCode, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(reached)
	if want := []string{"/x%2F%2Fy/z", "/x/y/?q=//"}; !slices.Equal(reached, want) {
		t.Errorf("backend got %q, want %q", reached, want)
	}
}

// A client cannot send the identity or forwarding headers the gateway
// vouches for as request trailers either: a backend that reads trailers
// as metadata would take them for the gateway's.
func TestGatewayHeadersNotAcceptedAsTrailers(t *testing.T) {
	got := make(chan http.Header, 1)
	b := newScriptedBackend(t, func(c net.Conn, req *http.Request) []byte {
		got <- req.Trailer
		return echoResponse(req)
	})
	addr := prefixServer(t, b.addr)
	resp := rawExchange(t, addr, "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Consumer, X-Checksum\r\n\r\n"+
		"5\r\nhello\r\n0\r\nX-Consumer: admin\r\nX_Scopes: all\r\nx-forwarded-for: 1.2.3.4\r\nX-Request-Id: spoof\r\nX-Checksum: abc\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	tr := <-got
	for k := range tr {
		if k != "X-Checksum" {
			t.Errorf("trailer %s: %q reached the backend", k, tr[k])
		}
	}
	if tr.Get("X-Checksum") != "abc" {
		t.Errorf("trailers %v: the client's own X-Checksum is missing", tr)
	}

	// A body too large to read ahead is streamed: its trailer arrives
	// after the request went upstream.
	big := strings.Repeat("x", 200<<10)
	resp = rawExchange(t, addr, fmt.Sprintf("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Consumer\r\n\r\n%x\r\n%s\r\n0\r\nX-Consumer: admin\r\n\r\n", len(big), big))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("streamed: status %d", resp.StatusCode)
	}
	if v := (<-got).Values("X-Consumer"); len(v) > 0 {
		t.Errorf("streamed body: trailer X-Consumer %q reached the backend", v)
	}
}
