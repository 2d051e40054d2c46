package contract

import (
	"fmt"
	"strings"
	"testing"
)

// TestHeadCheckedAsGet: the validator matches HEAD to a path through its
// GET but checked none of the GET's parameters, so HEAD with a query,
// header or path parameter the contract forbids reached the upstream (Go's
// net/http serves HEAD with the GET handler). A HEAD is now checked as
// that GET; a path with its own HEAD operation is checked against it.
func TestHeadCheckedAsGet(t *testing.T) {
	srv, up, _ := newHarness(t, Config{})
	if code, _, body := send(t, "HEAD", srv.URL+"/v1/rides/r-0000abcd?fields=all&limit=5", "", ""); code != 200 {
		t.Fatalf("conforming HEAD: %d %s", code, body)
	}
	before := up.calls.Load()
	for _, c := range []struct {
		name, path string
		hdr        []string
		status     int
	}{
		{"query enum", "/v1/rides/r-0000abcd?fields=everything", nil, 400},
		{"query type", "/v1/rides/r-0000abcd?limit=lots", nil, 400},
		{"header length", "/v1/rides/r-0000abcd", []string{"X-Client", strings.Repeat("x", 40)}, 400},
		{"path pattern", "/v1/rides/42", nil, 400},
		{"unknown path", "/v1/admin", nil, 404},
		{"no GET", "/v1/rides", nil, 405},
	} {
		if code, _, _ := send(t, "HEAD", srv.URL+c.path, "", "", c.hdr...); code != c.status {
			t.Errorf("HEAD %s (%s): %d, want %d", c.path, c.name, code, c.status)
		}
	}
	if n := up.calls.Load() - before; n != 0 {
		t.Errorf("%d refused HEAD requests reached the upstream", n)
	}

	// A path with its own HEAD operation is checked against that one.
	doc := strings.Replace(ridesAPI, "    delete:\n", `    head:
      parameters:
        - { name: probe, in: query, required: true, schema: { type: integer } }
      responses: { '200': { description: exists } }
    delete:
`, 1)
	srv2, up2, _ := newHarness(t, Config{Document: []byte(doc)})
	if code, _, _ := send(t, "HEAD", srv2.URL+"/v1/rides/r-0000abcd?probe=1", "", ""); code != 200 {
		t.Errorf("HEAD with its own operation, conforming: %d", code)
	}
	if code, _, _ := send(t, "HEAD", srv2.URL+"/v1/rides/r-0000abcd?probe=x", "", ""); code != 400 {
		t.Errorf("HEAD with its own operation, bad probe: %d, want 400", code)
	}
	if code, _, _ := send(t, "HEAD", srv2.URL+"/v1/stream", "", ""); code != 200 {
		t.Errorf("HEAD of a GET-only path in a document with HEAD operations: %d", code)
	}
	if n := up2.calls.Load(); n != 2 {
		t.Errorf("upstream calls %d, want 2", n)
	}
}

// TestProblemBounded: the validator quotes what it refuses; a 200 KB
// string missing its pattern came back whole, twice (detail and
// violation), and a body breaking the schema in many places listed every
// place. Each text is cut at 1 KiB and the list at 100.
func TestProblemBounded(t *testing.T) {
	doc := strings.Replace(ridesAPI, "                note: { type: [string, \"null\"], maxLength: 40 }\n",
		"                note: { type: [string, \"null\"], maxLength: 40 }\n                stops: { type: array, items: { type: integer } }\n                code: { type: string, pattern: '^[A-Z]+$' }\n", 1)
	srv, up, _ := newHarness(t, Config{Document: []byte(doc)})
	long := strings.Repeat("x", 200000)
	code, h, body := send(t, "POST", srv.URL+"/v1/rides", "application/json", `{"from":{"lat":1,"lng":2},"to":{"lat":1,"lng":2},"code":"`+long+`"}`)
	if code != 400 || len(body) > 8192 {
		t.Fatalf("a 200 KB code: %d, %d bytes of problem", code, len(body))
	}
	if p := problemOf(t, h, body); len(p.Violations) == 0 || !strings.Contains(p.Detail, "more bytes") {
		t.Errorf("a cut detail says so: %+v", p)
	}
	items := make([]string, 500)
	for i := range items {
		items[i] = fmt.Sprintf(`"s%d"`, i)
	}
	code, h, body = send(t, "POST", srv.URL+"/v1/rides", "application/json", `{"from":{"lat":1,"lng":2},"to":{"lat":1,"lng":2},"stops":[`+strings.Join(items, ",")+`]}`)
	p := problemOf(t, h, body)
	if code != 400 || len(p.Violations) != 101 || !strings.Contains(p.Violations[100].Message, "400 more violations") {
		t.Fatalf("500 bad items: %d, %d violations (last %+v)", code, len(p.Violations), p.Violations[len(p.Violations)-1])
	}
	if n := up.calls.Load(); n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}
}

// TestBodyWithoutRequestBody: the validator checks a body only against
// the operation's requestBody; a GET (or DELETE) carrying one reached the
// upstream unread. It is refused; an operation that declares a body keeps
// taking it, and a bodiless request is unaffected.
func TestBodyWithoutRequestBody(t *testing.T) {
	srv, up, _ := newHarness(t, Config{})
	for _, c := range []struct{ method, path, ctype, body string }{
		{"GET", "/v1/rides/r-0000abcd", "application/json", `{"admin":true}`},
		{"GET", "/v1/rides/r-0000abcd", "text/plain", `hello`},
		{"DELETE", "/v1/rides/r-0000abcd", "application/json", `{"cascade":true}`},
	} {
		code, h, body := send(t, c.method, srv.URL+c.path, c.ctype, c.body)
		if code != 400 {
			t.Errorf("%s %s with a body: %d, want 400", c.method, c.path, code)
			continue
		}
		if p := problemOf(t, h, body); len(p.Violations) != 1 || p.Violations[0].In != "body" || !strings.Contains(p.Violations[0].Message, "takes no request body") {
			t.Errorf("%s with a body: %+v", c.method, p)
		}
	}
	if n := up.calls.Load(); n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}
	if code, _, body := send(t, "GET", srv.URL+"/v1/rides/r-0000abcd", "", ""); code != 200 {
		t.Errorf("GET without a body: %d %s", code, body)
	}
	if code, _, body := send(t, "DELETE", srv.URL+"/v1/rides/r-0000abcd", "", ""); code != 200 {
		t.Errorf("DELETE without a body: %d %s", code, body)
	}
	if code, _, body := send(t, "POST", srv.URL+"/v1/rides", "application/json", `{"from":{"lat":1,"lng":2},"to":{"lat":1,"lng":2}}`); code != 201 {
		t.Errorf("POST with its body: %d %s", code, body)
	}
}
