package httpapi

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/broker"
)

// PUT and DELETE /v1/topics/NAME/queues/QUEUE bind and unbind one queue,
// leaving the others; errors are problem documents.
func TestBindRoutes(t *testing.T) {
	c := newServer(t)
	c.do("PUT", "/v1/queues/audit", "", nil, nil)
	c.do("PUT", "/v1/queues/billing", "", nil, nil)
	if st := c.do("PUT", "/v1/topics/rides", `{"queues":["audit"]}`, nil, nil); st != 200 {
		t.Fatalf("put topic %d", st)
	}
	var a broker.BindAnswer
	if st := c.do("PUT", "/v1/topics/rides/queues/billing", "", nil, &a); st != 201 || !a.Changed || !a.Bound || a.Queue != "billing" || a.Topic != "rides" {
		t.Fatalf("bind: %d %+v", st, a)
	}
	a = broker.BindAnswer{}
	if st := c.do("PUT", "/v1/topics/rides/queues/billing", "", nil, &a); st != 200 || a.Changed || !a.Bound {
		t.Fatalf("bind again: %d %+v", st, a)
	}
	var info broker.TopicInfo
	c.do("GET", "/v1/topics/rides", "", nil, &info)
	if !slices.Equal(info.Config.Queues, []string{"audit", "billing"}) {
		t.Fatalf("bound %v", info.Config.Queues)
	}
	a = broker.BindAnswer{}
	if st := c.do("DELETE", "/v1/topics/rides/queues/audit", "", nil, &a); st != 200 || !a.Changed || a.Bound {
		t.Fatalf("unbind: %d %+v", st, a)
	}
	a = broker.BindAnswer{}
	if st := c.do("DELETE", "/v1/topics/rides/queues/audit", "", nil, &a); st != 200 || a.Changed {
		t.Fatalf("unbind again: %d %+v", st, a)
	}
	if st := c.do("PUT", "/v1/topics/rides/queues/rides.g1?create=1", "", nil, &a); st != 201 {
		t.Fatalf("bind creating: %d %+v", st, a)
	}
	var q broker.QueueInfo
	if st := c.do("GET", "/v1/queues/rides.g1.dlq", "", nil, &q); st != 200 {
		t.Fatalf("the created queue's dead-letter queue: %d", st)
	}

	for _, tc := range []struct {
		method, path string
		status       int
		code, says   string
	}{
		{"PUT", "/v1/topics/nope/queues/audit", 404, "not_found", `topic "nope"`},
		{"PUT", "/v1/topics/rides/queues/nope", 404, "not_found", `queue "nope"`},
		{"DELETE", "/v1/topics/nope/queues/audit", 404, "not_found", `topic "nope"`},
		{"PUT", "/v1/topics/rides/queues/a%20b", 400, "bad_request", "queue name"},
		{"PUT", "/v1/topics/rides/queues/a%00b", 400, "bad_request", "queue name"},
		{"PUT", "/v1/topics/rides/queues/a%2Fb", 400, "bad_request", "queue name"},
		{"PUT", "/v1/topics/rides/queues/%C3%BC", 400, "bad_request", "queue name"},
		{"PUT", "/v1/topics/rides/queues/%FF", 400, "bad_request", "queue name"},
		{"DELETE", "/v1/topics/rides/queues/.x", 400, "bad_request", "queue name"},
		{"PUT", "/v1/topics/rides/queues/" + strings.Repeat("q", 201), 400, "bad_request", "queue name"},
		{"PUT", "/v1/topics/rides/queues/audit?create=maybe", 400, "bad_request", "create"},
	} {
		req, _ := http.NewRequest(tc.method, c.base+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != tc.status || !strings.HasPrefix(ct, "application/problem+json") {
			t.Fatalf("%s %s: %d %s, want %d problem+json", tc.method, tc.path, resp.StatusCode, ct, tc.status)
		}
		var e broker.ErrorBody
		c.do(tc.method, tc.path, "", nil, &e)
		if e.Code != tc.code || e.Status != tc.status || !strings.Contains(e.Detail, tc.says) {
			t.Fatalf("%s %s: %+v, want code %s naming %s", tc.method, tc.path, e, tc.code, tc.says)
		}
	}
}
