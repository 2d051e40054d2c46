package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/broker"
)

// TestErrorsAreProblemDetails: every kind of error answer of the API is an
// RFC 9457 problem (application/problem+json; type, title, integer status
// equal to the response's, detail) with the broker's code, and error kept
// equal to detail for clients of the older bodies.
func TestErrorsAreProblemDetails(t *testing.T) {
	c := newServer(t)
	c.do("PUT", "/v1/queues/small", `{"max_length":1,"max_message_size":8}`, nil, nil)
	c.do("POST", "/v1/queues/small/messages", "1", nil, nil)
	cases := []struct {
		name, method, path, body string
		status                   int
		code, detail             string
	}{
		{"no route", "GET", "/v1/nothing", "", 404, "not_found", "no route for GET /v1/nothing"},
		{"wrong method", "POST", "/v1/queues", "", 405, "bad_request", "method POST is not allowed"},
		{"unknown queue", "GET", "/v1/queues/nope", "", 404, "not_found", `queue "nope" not found`},
		{"bad limit", "GET", "/v1/queues?limit=-1", "", 400, "bad_request", "query parameter limit"},
		{"huge limit", "GET", "/v1/queues?limit=99999999999999999999", "", 400, "bad_request", "from 1 to 1000"},
		{"repeated limit", "GET", "/v1/queues?limit=1&limit=2", "", 400, "bad_request", "more than once"},
		{"bad cursor", "GET", "/v1/queues?cursor=%00%ff", "", 400, "bad_request", "query parameter cursor"},
		{"bad json", "PUT", "/v1/queues/x", `{"visibility_timeout":`, 400, "bad_request", ""},
		{"too large", "POST", "/v1/queues/small/messages", "123456789", 413, "too_large", ""},
		{"full", "POST", "/v1/queues/small/messages", "2", 503, "queue_full", `queue "small" is full`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, c.base+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, data)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			var p map[string]any
			if err := json.Unmarshal(data, &p); err != nil {
				t.Fatalf("%s: %v", data, err)
			}
			if p["type"] != "about:blank" || p["title"] != http.StatusText(tc.status) || p["status"] != float64(tc.status) {
				t.Fatalf("problem members: %s", data)
			}
			d, _ := p["detail"].(string)
			if d == "" || p["error"] != d || p["code"] != tc.code || !strings.Contains(d, tc.detail) {
				t.Fatalf("detail/code/error: %s (want code %s, detail containing %q)", data, tc.code, tc.detail)
			}
			if tc.code == broker.CodeQueueFull && (p["queue"] != "small" || p["limit"] != float64(1)) {
				t.Fatalf("queue_full extension members: %s", data)
			}
		})
	}
}
