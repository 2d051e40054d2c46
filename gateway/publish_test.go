package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
)

// startBroker runs a real broker with its HTTP API on loopback until the
// test ends, with the given queues declared.
func startBroker(t *testing.T, queues map[string]broker.QueueConfig) (*engine.Broker, string) {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	for name, qc := range queues {
		if err := b.Declare(name, qc); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(httpapi.New(b))
	t.Cleanup(srv.Close)
	return b, srv.URL
}

type accepted struct {
	ID        string `json:"id"`
	Queue     string `json:"queue"`
	StatusURL string `json:"status_url"`
	Duplicate bool   `json:"duplicate"`
}

type gwStatus struct {
	ID         string `json:"id"`
	Queue      string `json:"queue"`
	State      string `json:"state"`
	Deliveries int    `json:"deliveries"`
	MsgID      string `json:"msg_id"`
}

type gwError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

func publishConfig(brokerURL string) string {
	return fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
broker: { url: %q, timeout: 2s }
auth:
  consumers:
    - { name: alice, tier: premium, api_keys: [{key: alice-key-0123456789}] }
    - { name: bob, tier: free, api_keys: [{key: bob-key-0123456789}] }
routes:
  - match: { path_prefix: /orders }
    auth: [api_key]
    max_request_body: 64
    publish: { queue: orders }
  - match: { path: /tiny }
    publish: { queue: tiny, headers: [X-Tenant] }
  - match: { path: /nowhere }
    publish: { queue: nowhere }
`, brokerURL)
}

func TestPublishAcceptsTracksAndDedups(t *testing.T) {
	b, brokerURL := startBroker(t, map[string]broker.QueueConfig{
		"orders": {},
		"tiny":   {MaxLength: 1},
	})
	gw := startGateway(t, publishConfig(brokerURL))
	alice := []string{"X-API-Key", "alice-key-0123456789", "Content-Type", "application/json"}
	ctx := context.Background()

	code, body, h := do(t, "POST", gw.url+"/orders/new?src=web", strings.NewReader(`{"item":"book"}`), alice...)
	if code != http.StatusAccepted {
		t.Fatalf("publish: %d %s", code, body)
	}
	acc := decode[accepted](t, body)
	if acc.ID == "" || acc.Queue != "orders" || acc.StatusURL != "/orders/_status/"+acc.ID || acc.Duplicate {
		t.Fatalf("answer %+v", acc)
	}
	if h.Get("Location") != acc.StatusURL {
		t.Fatalf("Location %q, want %q", h.Get("Location"), acc.StatusURL)
	}

	status := func(want string) gwStatus {
		t.Helper()
		code, body, _ := get(t, gw.url+acc.StatusURL, alice...)
		st := decode[gwStatus](t, body)
		if code != 200 || st.State != want || st.ID != acc.ID || st.Queue != "orders" || st.MsgID != "" {
			t.Fatalf("status: %d %s, want state %s", code, body, want)
		}
		return st
	}
	status("ready")

	ds, err := b.Receive(ctx, "orders", broker.ReceiveOptions{Max: 10, Wait: time.Second})
	if err != nil || len(ds) != 1 {
		t.Fatalf("receive: %v %+v", err, ds)
	}
	d := ds[0]
	if string(d.Body) != `{"item":"book"}` || fmt.Sprint(d.Seq) != acc.ID {
		t.Fatalf("delivery %+v", d)
	}
	want := map[string]string{
		"x-consumer": "alice", "x-consumer-tier": "premium", "content-type": "application/json",
		"x-request-id": h.Get("X-Request-Id"), "x-request-method": "POST", "x-request-uri": "/orders/new?src=web",
	}
	for k, v := range want {
		if d.Headers[k] != v {
			t.Errorf("message header %s = %q, want %q (all: %v)", k, d.Headers[k], v, d.Headers)
		}
	}
	if _, ok := d.Headers["x-api-key"]; ok {
		t.Error("credentials copied into the message")
	}
	if st := status("in_flight"); st.Deliveries != 1 {
		t.Fatalf("deliveries %d", st.Deliveries)
	}
	if _, err := b.Ack(ctx, "orders", []string{d.Receipt}); err != nil {
		t.Fatal(err)
	}
	status("acked")

	t.Run("idempotency key", func(t *testing.T) {
		keyed := append([]string{"Idempotency-Key", "order-77"}, alice...)
		_, body1, _ := do(t, "POST", gw.url+"/orders", strings.NewReader("one"), keyed...)
		code, body2, h := do(t, "POST", gw.url+"/orders", strings.NewReader("one"), keyed...)
		first, again := decode[accepted](t, body1), decode[accepted](t, body2)
		if code != 202 || again.ID != first.ID || !again.Duplicate || first.Duplicate || h.Get("Location") != first.StatusURL {
			t.Fatalf("repeat: %d %+v after %+v", code, again, first)
		}
		// The same key from another consumer is another request.
		_, body3, _ := do(t, "POST", gw.url+"/orders", strings.NewReader("bob's"), "X-API-Key", "bob-key-0123456789", "Idempotency-Key", "order-77")
		if other := decode[accepted](t, body3); other.ID == first.ID || other.Duplicate {
			t.Fatalf("bob's key collided with alice's: %+v", other)
		}
		ds, err := b.Receive(ctx, "orders", broker.ReceiveOptions{Max: 10, Wait: 100 * time.Millisecond})
		if err != nil || len(ds) != 2 || string(ds[0].Body) != "one" || string(ds[1].Body) != "bob's" {
			t.Fatalf("want one message per key and consumer, got %v %d", err, len(ds))
		}
		code, body, _ = do(t, "POST", gw.url+"/orders", strings.NewReader("x"), append([]string{"Idempotency-Key", "bad\tkey"}, alice...)...)
		if e := decode[gwError](t, body); code != 400 || e.Code != "bad_idempotency_key" {
			t.Fatalf("bad key: %d %s", code, body)
		}
	})

	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code, inMsg              string
	}{
		{"auth still applies", "POST", "/orders", "x", nil, 401, "missing_credentials", ""},
		{"status needs auth too", "GET", "/orders/_status/1", "", nil, 401, "missing_credentials", ""},
		{"oversized", "POST", "/orders", strings.Repeat("x", 65), alice, 413, "body_too_large", "64 bytes"},
		{"not a publish method", "GET", "/orders", "", alice, 405, "method_not_allowed", ""},
		{"bad tracking id", "GET", "/orders/_status/abc", "", alice, 404, "not_found", ""},
		{"unknown queue", "POST", "/nowhere", "x", nil, 502, "publish_failed", `"nowhere"`},
		{"unknown queue status", "GET", "/nowhere/_status/1", "", nil, 502, "status_failed", `"nowhere"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader
			if tc.body != "" {
				rd = strings.NewReader(tc.body)
			}
			code, body, _ := do(t, tc.method, gw.url+tc.path, rd, tc.hdr...)
			e := decode[gwError](t, body)
			if code != tc.status || e.Code != tc.code || !strings.Contains(e.Error, tc.inMsg) {
				t.Fatalf("got %d %s, want %d %s containing %q", code, body, tc.status, tc.code, tc.inMsg)
			}
		})
	}

	t.Run("oversized without content length", func(t *testing.T) {
		req, _ := http.NewRequest("POST", gw.url+"/orders", io.MultiReader(strings.NewReader(strings.Repeat("y", 100))))
		req.Header.Set("X-API-Key", "alice-key-0123456789")
		req.ContentLength = -1 // chunked
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("chunked oversized body: %d", resp.StatusCode)
		}
	})

	t.Run("queue full and listed headers", func(t *testing.T) {
		code, body, _ := do(t, "POST", gw.url+"/tiny", strings.NewReader("1"), "X-Tenant", "acme", "Content-Type", "text/plain")
		if code != 202 {
			t.Fatalf("first: %d %s", code, body)
		}
		code, body, h := do(t, "POST", gw.url+"/tiny", strings.NewReader("2"))
		if e := decode[gwError](t, body); code != 503 || e.Code != "queue_full" || !strings.Contains(e.Error, `queue "tiny" is full`) || h.Get("Retry-After") == "" {
			t.Fatalf("full: %d %s", code, body)
		}
		ds, _ := b.Receive(ctx, "tiny", broker.ReceiveOptions{})
		if len(ds) != 1 || ds[0].Headers["x-tenant"] != "acme" || ds[0].Headers["content-type"] != "" {
			t.Fatalf("only the listed headers (and method, uri) are copied: %+v", ds)
		}
	})
}

func TestPublishBrokerDown(t *testing.T) {
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
broker: { url: "http://%s" }
routes:
  - match: { path: /jobs }
    publish: { queue: jobs }
`, deadAddr(t)))
	for _, tc := range []struct{ method, path string }{{"POST", "/jobs"}, {"GET", "/jobs/_status/1"}} {
		code, body, h := do(t, tc.method, gw.url+tc.path, strings.NewReader("x"))
		if e := decode[gwError](t, body); code != 503 || e.Code != "broker_unavailable" || h.Get("Retry-After") == "" {
			t.Fatalf("%s %s with the broker down: %d %s", tc.method, tc.path, code, body)
		}
	}
}

func TestPublishConfigErrors(t *testing.T) {
	const head = "listen: 127.0.0.1:0\n"
	for name, tc := range map[string]struct {
		yaml string
		want []string
	}{
		"no queue": {head + "broker: { url: http://127.0.0.1:7401 }\nroutes:\n  - publish: { headers: [X-A] }\n",
			[]string{"routes[0].publish.queue", "missing"}},
		"bad broker url": {head + "broker: { url: \"ftp://b:1\" }\nroutes:\n  - publish: { queue: q }\n",
			[]string{"broker.url", "http://"}},
		"missing broker url": {head + "broker: {}\nroutes:\n  - publish: { queue: q }\n",
			[]string{"broker.url", "missing"}},
		"no broker section": {head + "routes:\n  - publish: { queue: q }\n",
			[]string{"routes[0].publish", "no top-level broker"}},
		"publish and upstream": {head + "broker: { url: http://b:1 }\nupstreams: { a: { targets: [{address: 'h:1'}] } }\nroutes:\n  - { upstream: a, publish: { queue: q } }\n",
			[]string{"routes[0].publish", "one of upstream, aggregate and publish"}},
		"bad header": {head + "broker: { url: http://b:1 }\nroutes:\n  - publish: { queue: q, headers: [\"X A\"] }\n",
			[]string{"routes[0].publish.headers[0]", `"X A"`}},
		"bad queue name": {head + "broker: { url: http://b:1 }\nroutes:\n  - publish: { queue: \"a b\" }\n",
			[]string{"routes[0].publish.queue", `invalid queue name "a b"`}},
		"unknown key": {head + "broker: { url: http://b:1 }\nroutes:\n  - publish: { queue: q, qeueu: r }\n",
			[]string{"routes[0].publish.qeueu"}},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gw.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			err := Check(path)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	t.Run("a publish-only gateway needs no upstream", func(t *testing.T) {
		if _, err := ParseConfig([]byte(head+"broker: { url: http://b:1 }\nroutes:\n  - publish: { queue: q }\n"), "ok.yaml"); err != nil {
			t.Fatal(err)
		}
	})
}
