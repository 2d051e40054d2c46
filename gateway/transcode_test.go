package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/transcode/transcodetest"
)

func transcodeConfig(lib *transcodetest.Library, extra string) string {
	return fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
upstreams:
  library:
    protocol: h2c
    timeout: { response: 400ms }
    targets: [{ address: %s }]
routes:
  - match: { path_prefix: /v1 }
    upstream: library
    max_request_body: 2048
    grpc_json:
      descriptor: %s
      services: [%s]%s
  - match: { path_prefix: /%s/ }
    upstream: library
    grpc_json: { descriptor: %s, services: [%s] }
`, lib.Addr, lib.DescriptorFile, transcodetest.Service, extra, transcodetest.Service, lib.DescriptorFile, transcodetest.Service)
}

func TestGRPCJSONThroughGateway(t *testing.T) {
	lib := transcodetest.Start(t)
	gw := startGateway(t, transcodeConfig(lib, "\n      print: { use_proto_names: true }"))
	get := func(method, path, body string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, gw.url+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	if st, h, b := get("GET", "/v1/shelves/s1/books/42", ""); st != 200 || b != `{"shelf":"s1","id":"42","title":"book-42"}`+"\n" || h.Get("X-Library-Shelf") != "s1" {
		t.Fatalf("%d %v %s", st, h, b)
	}
	if st, _, b := get("POST", "/v1/shelves/s2/books", `{"title":"T","pages":12}`); st != 200 || b != `{"shelf":"s2","title":"T","pages":12}`+"\n" {
		t.Fatalf("%d %s", st, b)
	}
	// The default mapping on the second route; the gateway's request id
	// travels as metadata.
	if st, _, b := get("POST", "/"+transcodetest.Service+"/GetBook", `{"shelf":"x","book_id":"1"}`); st != 200 || !strings.Contains(b, `"title":"book-1"`) {
		t.Fatalf("%d %s", st, b)
	}
	if md := lib.LastMetadata(); len(md.Get("x-request-id")) != 1 {
		t.Errorf("metadata %v lacks x-request-id", md)
	}
	// gRPC errors as problems.
	st, h, b := get("GET", "/v1/shelves/missing/books/3", "")
	var p map[string]any
	_ = json.Unmarshal([]byte(b), &p)
	if st != 404 || h.Get("Content-Type") != "application/problem+json" || p["grpc_status"] != "NOT_FOUND" || !strings.Contains(fmt.Sprint(p["detail"]), "no book 3") {
		t.Fatalf("%d %s", st, b)
	}
	// The route's max_request_body and the transcoder's own checks.
	if st, _, b := get("POST", "/v1/shelves/s/books", `{"title":"`+strings.Repeat("a", 3000)+`"}`); st != 413 {
		t.Fatalf("oversized: %d %s", st, b)
	}
	// (The gateway itself refuses dot segments, escaped or behind %2F,
	// before routing; package transcode's tests show the transcoder's own
	// refusal.)
	if st, _, b := get("GET", "/v1/shelves/%2e%2e/books/1", ""); st != 400 {
		t.Fatalf("traversal: %d %s", st, b)
	}
	if st, _, b := get("GET", "/v1/files/a/x%2F..%2Fy:list", ""); st != 400 {
		t.Fatalf("traversal: %d %s", st, b)
	}
	// Server streaming.
	if st, h, b := get("GET", "/v1/shelves/w:watch?page_size=2", ""); st != 200 || h.Get("Content-Type") != "application/x-ndjson" || strings.Count(b, "\n") != 2 {
		t.Fatalf("watch: %d %s", st, b)
	}
	// The upstream's response timeout goes upstream as grpc-timeout: the
	// service sees a deadline no later than 400ms away, and its
	// DEADLINE_EXCEEDED (or the gateway's own timeout) is a 504.
	st, _, b = get("POST", "/"+transcodetest.Service+"/Slow", `{}`)
	if st != 504 {
		t.Fatalf("slow: %d %s", st, b)
	}
	dl := lib.Deadlines()
	if len(dl) != 1 || dl[0] <= 0 || dl[0] > 400*time.Millisecond {
		t.Fatalf("deadlines seen by the service: %v", dl)
	}
}

func TestGRPCJSONConfigErrors(t *testing.T) {
	lib := transcodetest.Start(t)
	for name, c := range map[string]struct {
		cfg  string
		want []string
	}{
		"http1 upstream": {strings.Replace(transcodeConfig(lib, ""), "protocol: h2c", "protocol: http1", 1),
			[]string{"gateway.yaml:", "routes[0].grpc_json", `upstream "library" speaks http1`, "h2c"}},
		"unknown service": {strings.Replace(transcodeConfig(lib, ""), "services: ["+transcodetest.Service+"]", "services: [pkg.Nope]", 1),
			[]string{"gateway.yaml:", "routes[0].grpc_json.services[0]", `service "pkg.Nope" is not in`, transcodetest.Service}},
		"missing descriptor": {strings.Replace(transcodeConfig(lib, ""), lib.DescriptorFile, "/nonexistent/x.pb", 1),
			[]string{"gateway.yaml:", "routes[0].grpc_json.descriptor", "no such file"}},
		"strip_prefix": {strings.Replace(transcodeConfig(lib, ""), "max_request_body: 2048", "strip_prefix: /v1", 1),
			[]string{"routes[0].strip_prefix", "does not apply"}},
		"no services": {strings.Replace(transcodeConfig(lib, ""), "services: ["+transcodetest.Service+"]", "services: []", 1),
			[]string{"routes[0].grpc_json.services", "missing"}},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gateway.yaml")
			if err := os.WriteFile(path, []byte(c.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := New(Options{ConfigPath: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
