package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
)

type client struct {
	t    *testing.T
	base string
}

func newServer(t *testing.T) *client {
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(b))
	t.Cleanup(func() { srv.Close(); b.Close() })
	return &client{t: t, base: srv.URL}
}

// do sends a request and decodes a JSON answer into out (if not nil),
// returning the status.
func (c *client) do(method, path, body string, hdr map[string]string, out any) int {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: decoding %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

type errAnswer struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	Queue string `json:"queue"`
	Limit int    `json:"limit"`
}

func TestQueueLifecycle(t *testing.T) {
	c := newServer(t)
	var info broker.QueueInfo
	if st := c.do("PUT", "/v1/queues/orders", `{"visibility_timeout":"10s","max_deliveries":3}`, nil, &info); st != 200 {
		t.Fatalf("put: %d", st)
	}
	if info.Config.VisibilityTimeout.Std() != 10*time.Second || info.Config.DeadLetter != "orders.dlq" {
		t.Fatalf("info %+v", info)
	}
	var pub struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	hdr := map[string]string{"Msg-Id": "o-1", "Msg-Key": "cust-7", "Msg-Header-Color": "red"}
	if st := c.do("POST", "/v1/queues/orders/messages", "hello", hdr, &pub); st != 201 || pub.ID == "" || pub.Duplicate {
		t.Fatalf("publish: %d %+v", st, pub)
	}
	first := pub.ID
	if st := c.do("POST", "/v1/queues/orders/messages", "hello", hdr, &pub); st != 201 || !pub.Duplicate || pub.ID != first {
		t.Fatalf("duplicate publish: %d %+v", st, pub)
	}
	c.do("POST", "/v1/queues/orders/messages", "later", map[string]string{"Delay": "1h"}, nil)
	if st := c.do("POST", "/v1/queues/orders/messages?confirm=false", "ff", nil, &pub); st != 202 {
		t.Fatalf("fire-and-forget: %d", st)
	}
	// The fire-and-forget message becomes deliverable once it is durable:
	// wait for its status to say so.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st struct {
			State string `json:"state"`
		}
		c.do("GET", "/v1/queues/orders/messages/"+pub.ID, "", nil, &st)
		if st.State == "ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fire-and-forget message state %q, want ready", st.State)
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.do("GET", "/v1/queues/orders", "", nil, &info)
	if info.Depth != 2 || info.Delayed != 1 {
		t.Fatalf("info %+v", info)
	}
	var ds []broker.ReceivedMessage
	if st := c.do("POST", "/v1/queues/orders/receive?max=10&wait=1s&visibility=30s", "", nil, &ds); st != 200 || len(ds) != 2 {
		t.Fatalf("receive: %d %+v", st, ds)
	}
	if string(ds[0].Body) != "hello" || ds[0].Headers["color"] != "red" || ds[0].Key != "cust-7" || ds[0].Deliveries != 1 {
		t.Fatalf("delivery %+v", ds[0])
	}
	var res broker.AckResult
	if st := c.do("POST", "/v1/queues/orders/ack", fmt.Sprintf(`{"receipts":[%q]}`, ds[0].Receipt), nil, &res); st != 200 || res.Done != 1 {
		t.Fatalf("ack: %d %+v", st, res)
	}
	if st := c.do("POST", "/v1/queues/orders/nack", fmt.Sprintf(`{"receipts":[%q],"delay":"0s"}`, ds[1].Receipt), nil, &res); st != 200 || res.Done != 1 {
		t.Fatalf("nack: %d %+v", st, res)
	}
	if st := c.do("POST", "/v1/queues/orders/ack", fmt.Sprintf(`{"receipts":[%q]}`, ds[1].Receipt), nil, &res); st != 200 || res.Done != 0 || len(res.Failed) != 1 {
		t.Fatalf("stale ack: %d %+v", st, res)
	}
	if st := c.do("POST", "/v1/queues/orders/receive?max=10", "", nil, &ds); st != 200 || len(ds) != 1 || ds[0].Deliveries != 2 {
		t.Fatalf("redelivery: %d %+v", st, ds)
	}
	var moved map[string]int
	if st := c.do("POST", "/v1/queues/orders/redrive", "", nil, &moved); st != 200 || moved["moved"] != 0 {
		t.Fatalf("redrive: %d %v", st, moved)
	}
	if st := c.do("DELETE", "/v1/queues/orders", "", nil, nil); st != 204 {
		t.Fatalf("delete: %d", st)
	}
	var e errAnswer
	if st := c.do("GET", "/v1/queues/orders", "", nil, &e); st != 404 || e.Code != "not_found" {
		t.Fatalf("get deleted: %d %+v", st, e)
	}
}

func TestErrors(t *testing.T) {
	c := newServer(t)
	c.do("PUT", "/v1/queues/small", `{"max_length":1,"max_message_size":8}`, nil, nil)
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"unknown queue publish", "POST", "/v1/queues/nope/messages", "x", nil, 404, "not_found"},
		{"unknown queue receive", "POST", "/v1/queues/nope/receive", "", nil, 404, "not_found"},
		{"oversized", "POST", "/v1/queues/small/messages", "123456789", nil, 413, "too_large"},
		{"bad delay", "POST", "/v1/queues/small/messages", "x", map[string]string{"Delay": "soon"}, 400, "bad_request"},
		{"unknown setting", "PUT", "/v1/queues/q2", `{"visibility":"1s"}`, nil, 400, "bad_request"},
		{"bad setting", "PUT", "/v1/queues/q2", `{"overflow":"drop"}`, nil, 400, "bad_request"},
		{"bad name", "PUT", "/v1/queues/a%20b", ``, nil, 400, "bad_request"},
		{"bad max", "POST", "/v1/queues/small/receive?max=0", "", nil, 400, "bad_request"},
		{"bad wait", "POST", "/v1/queues/small/receive?wait=forever", "", nil, 400, "bad_request"},
		{"no receipts", "POST", "/v1/queues/small/ack", `{}`, nil, 400, "bad_request"},
		{"bad json", "POST", "/v1/queues/small/ack", `{"receipts":`, nil, 400, "bad_request"},
		{"no route", "GET", "/v2/whatever", "", nil, 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e errAnswer
			if st := c.do(tc.method, tc.path, tc.body, tc.hdr, &e); st != tc.status || e.Code != tc.code || e.Error == "" {
				t.Fatalf("got %d %+v, want %d %s", st, e, tc.status, tc.code)
			}
		})
	}
	t.Run("full", func(t *testing.T) {
		if st := c.do("POST", "/v1/queues/small/messages", "1", nil, nil); st != 201 {
			t.Fatalf("first publish %d", st)
		}
		var e errAnswer
		if st := c.do("POST", "/v1/queues/small/messages", "2", nil, &e); st != 503 || e.Code != "queue_full" || e.Queue != "small" || e.Limit != 1 {
			t.Fatalf("full queue: %d %+v", st, e)
		}
	})
}

func TestLongPollHTTP(t *testing.T) {
	c := newServer(t)
	c.do("PUT", "/v1/queues/q", "", nil, nil)
	go func() {
		time.Sleep(50 * time.Millisecond)
		req, _ := http.NewRequest("POST", c.base+"/v1/queues/q/messages", strings.NewReader("x"))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	var ds []broker.ReceivedMessage
	start := time.Now()
	if st := c.do("POST", "/v1/queues/q/receive?wait=5s", "", nil, &ds); st != 200 || len(ds) != 1 {
		t.Fatalf("long poll: %d %+v", st, ds)
	}
	if time.Since(start) > 4*time.Second {
		t.Fatal("long poll did not wake on publish")
	}
	if st := c.do("POST", "/v1/queues/q/receive?wait=10ms", "", nil, &ds); st != 200 || len(ds) != 0 {
		t.Fatalf("empty poll: %d %+v", st, ds)
	}
}

// TestCrossOriginRefused: a web page could post a form to the broker (no
// CORS preflight for text/plain) and publish into a queue, or receive and
// so take messages away, with whatever the browser sends by itself. A
// change a browser marks as cross-origin is refused with 403; programs
// (no Origin or Sec-Fetch-Site) and reads are unaffected.
func TestCrossOriginRefused(t *testing.T) {
	c := newServer(t)
	if st := c.do("PUT", "/v1/queues/q", `{}`, nil, nil); st != 201 && st != 200 {
		t.Fatalf("declare: %d", st)
	}
	var e errAnswer
	for _, hdr := range []map[string]string{
		{"Origin": "https://evil.example", "Content-Type": "text/plain"},
		{"Sec-Fetch-Site": "cross-site"},
	} {
		if st := c.do("POST", "/v1/queues/q/messages", "forged", hdr, &e); st != 403 || e.Code != "cross_origin" {
			t.Errorf("publish with %v: %d %+v, want 403 cross_origin", hdr, st, e)
		}
		if st := c.do("POST", "/v1/queues/q/receive", `{}`, hdr, nil); st != 403 {
			t.Errorf("receive with %v: %d, want 403", hdr, st)
		}
	}
	var q struct {
		Depth int `json:"depth"`
	}
	if st := c.do("GET", "/v1/queues/q", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, &q); st != 200 || q.Depth != 0 {
		t.Fatalf("a cross-site GET reads: %d, depth %d (want 0: nothing forged got in)", st, q.Depth)
	}
	if st := c.do("POST", "/v1/queues/q/messages", "real", nil, nil); st != 201 {
		t.Errorf("a program's publish: %d", st)
	}
	if st := c.do("POST", "/v1/queues/q/messages", "same", map[string]string{"Sec-Fetch-Site": "same-origin"}, nil); st != 201 {
		t.Errorf("a same-origin publish: %d", st)
	}
}
