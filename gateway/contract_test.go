package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const gwContract = `openapi: 3.1.0
info: { title: Orders, version: "1" }
paths:
  /v1/orders:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [sku, qty]
              additionalProperties: false
              properties:
                sku: { type: string, pattern: '^[A-Z]{3}-[0-9]{4}$' }
                qty: { type: integer, minimum: 1, maximum: 99 }
      responses:
        '200':
          description: ok
          content: { application/json: { schema: { type: object, required: [id], properties: { id: { type: string } } } } }
  /v1/orders/{id}:
    get:
      parameters: [ { name: id, in: path, required: true, schema: { type: integer } } ]
      responses: { '200': { description: ok } }
`

// TestContractOnARealGateway: a route naming a contract forwards
// conforming requests, refuses the others with a problem carrying the
// gateway's request id (the upstream never sees them), serves the
// document, counts both in /metrics, and a reload with a broken contract
// is refused while the old one keeps enforcing.
func TestContractOnARealGateway(t *testing.T) {
	be := newBackend(t, "a")
	var seen []string
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"o-1"}`)
	})
	dir := t.TempDir()
	doc := filepath.Join(dir, "orders.yaml")
	if err := os.WriteFile(doc, []byte(gwContract), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
contracts:
  orders: { file: %s, serve_at: /v1/openapi.yaml, responses: enforce }
upstreams:
  u: { targets: [ { address: %s } ] }
routes:
  - { name: orders, match: { path_prefix: /v1/ }, upstream: u, contract: orders }
  - { name: other, match: { path_prefix: / }, upstream: u }
`, doc, be.addr())
	r := startGateway(t, cfg)

	if code, body, _ := do(t, "POST", r.url+"/v1/orders", strings.NewReader(`{"sku":"ABC-1234","qty":2}`), "Content-Type", "application/json"); code != 200 || body != `{"id":"o-1"}` {
		t.Fatalf("conforming order: %d %s", code, body)
	}
	code, body, h := do(t, "POST", r.url+"/v1/orders", strings.NewReader(`{"sku":"abc","qty":0}`), "Content-Type", "application/json", "X-Request-Id", "client-req-7")
	if code != 400 || h.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("bad order: %d %s", code, body)
	}
	var p struct {
		Status     int    `json:"status"`
		RequestID  string `json:"request_id"`
		Violations []struct {
			In, Pointer, Message string
		} `json:"violations"`
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	ptrs := map[string]bool{}
	for _, v := range p.Violations {
		ptrs[v.Pointer] = true
	}
	if p.Status != 400 || p.RequestID != "client-req-7" || !ptrs["/sku"] || !ptrs["/qty"] {
		t.Errorf("problem: %+v", p)
	}
	if code, _, _ := get(t, r.url+"/v1/orders/not-a-number"); code != 400 {
		t.Errorf("bad path parameter: %d", code)
	}
	if code, _, h := do(t, "DELETE", r.url+"/v1/orders", nil); code != 405 || h.Get("Allow") != "POST" {
		t.Errorf("method not in contract: %d Allow %q", code, h.Get("Allow"))
	}
	if code, body, _ := get(t, r.url+"/v1/openapi.yaml"); code != 200 || body != gwContract {
		t.Errorf("document: %d", code)
	}
	if code, _, _ := get(t, r.url+"/elsewhere"); code != 200 {
		t.Errorf("route without contract: %d", code)
	}
	if len(seen) != 2 || seen[0] != "POST /v1/orders" || seen[1] != "GET /elsewhere" {
		t.Errorf("upstream saw %v: only the conforming order and the uncontracted route should reach it", seen)
	}
	// A response breaking the contract is replaced by 502 (enforce).
	be.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"order":"o-1"}`)
	})
	if code, body, _ := do(t, "POST", r.url+"/v1/orders", strings.NewReader(`{"sku":"ABC-1234","qty":2}`), "Content-Type", "application/json"); code != 502 || !strings.Contains(body, "id") {
		t.Errorf("response violation: %d %s", code, body)
	}
	_, metrics, _ := get(t, r.admin+"/metrics")
	for _, want := range []string{
		`switchyard_contract_requests_total{contract="orders",result="refused"} 3`,
		`switchyard_contract_responses_total{contract="orders",result="violation"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A broken contract refuses the reload; the old one keeps enforcing.
	if err := os.WriteFile(doc, []byte("openapi: 3.1.0\npaths: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := do(t, "POST", r.admin+"/admin/reload", nil); code != 422 || !strings.Contains(body, "contracts.orders") {
		t.Errorf("reload with a broken contract: %d %s", code, body)
	}
	if code, _, _ := do(t, "POST", r.url+"/v1/orders", strings.NewReader(`{}`), "Content-Type", "application/json"); code != 400 {
		t.Errorf("after the refused reload: %d", code)
	}
}

// TestContractConfigErrors: unknown contract names and bad contract
// blocks are reported at their key paths.
func TestContractConfigErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.yaml")
	writeConfig(t, path, `listen: 127.0.0.1:0
contracts:
  orders: { file: "", responses: always }
upstreams:
  u: { targets: [ { address: 127.0.0.1:1 } ] }
routes:
  - { match: { path_prefix: / }, upstream: u, contract: order }
`)
	_, err := LoadConfig(path)
	for _, want := range []string{
		"contracts.orders.file: missing",
		`contracts.orders.responses: unknown mode "always"`,
		`routes[0].contract: unknown contract "order": expected one of the contracts block (orders)`,
		"gw.yaml:7",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
