package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
)

// TestWrongMethodIs405WithAllow sends a method no route takes to every
// path of the API: each answers 405 with the methods it does take in
// Allow, and a JSON error naming them.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	b, err := engine.Open(engine.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewWithOptions(b, Options{Metrics: prometheus.NewRegistry()}))
	t.Cleanup(func() { srv.Close(); b.Close() })
	c := &client{t: t, base: srv.URL}
	cases := []struct {
		path, method, allow string
	}{
		{"/v1/queues", "POST", "GET, HEAD"},
		{"/v1/queues/q", "POST", "DELETE, GET, HEAD, PUT"},
		{"/v1/queues/q/messages", "GET", "POST"},
		{"/v1/queues/q/messages/1", "DELETE", "GET, HEAD"},
		{"/v1/queues/q/receive", "GET", "POST"},
		{"/v1/queues/q/ack", "GET", "POST"},
		{"/v1/queues/q/nack", "PUT", "POST"},
		{"/v1/queues/q/redrive", "GET", "POST"},
		{"/v1/topics", "DELETE", "GET, HEAD"},
		{"/v1/topics/t", "POST", "DELETE, GET, HEAD, PUT"},
		{"/v1/topics/t/messages", "GET", "POST"},
		{"/v1/topics/t/events", "POST", "GET, HEAD"},
		{"/v1/topics/t/queues/q", "POST", "DELETE, PUT"},
		{"/v1/streams", "PUT", "GET, HEAD"},
		{"/v1/streams/s", "POST", "DELETE, GET, HEAD, PUT"},
		{"/v1/streams/s/messages", "DELETE", "GET, HEAD, POST"},
		{"/v1/streams/s/groups/g/fetch", "PUT", "GET, HEAD, POST"},
		{"/v1/streams/s/groups/g/commit", "GET", "POST"},
		{"/healthz", "POST", "GET, HEAD"},
		{"/metrics", "POST", "GET, HEAD"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, c.base+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != tc.allow {
				t.Fatalf("got %d Allow %q, want 405 Allow %q", resp.StatusCode, resp.Header.Get("Allow"), tc.allow)
			}
			var e errAnswer
			c.do(tc.method, tc.path, "", nil, &e)
			if e.Code != "bad_request" || !strings.Contains(e.Error, tc.method) || !strings.Contains(e.Error, tc.allow) {
				t.Fatalf("body %+v", e)
			}
		})
	}
	// OPTIONS lists the methods too.
	req, _ := http.NewRequest("OPTIONS", c.base+"/v1/queues/q", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Allow") != "DELETE, GET, HEAD, PUT" {
		t.Fatalf("OPTIONS: %d %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// A path no route has is still 404.
	var e errAnswer
	if st := c.do("GET", "/v1/queues/q/nothing", "", nil, &e); st != 404 || e.Code != "not_found" {
		t.Fatalf("unknown path: %d %+v", st, e)
	}
}

// TestErrorMessagesNameFieldAndValue checks that bad bodies are answered
// with the JSON field path, what was given and what was expected, never
// Go type names.
func TestErrorMessagesNameFieldAndValue(t *testing.T) {
	c := newServer(t)
	c.do("PUT", "/v1/queues/q", "", nil, nil)
	c.do("PUT", "/v1/streams/s", "", nil, nil)
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"duration as number", "PUT", "/v1/queues/q2", `{"visibility_timeout":30}`, 400,
			`visibility_timeout: expected a duration string like "30s", got number 30`},
		{"bad duration string", "PUT", "/v1/queues/q2", `{"visibility_timeout":"soon"}`, 400,
			`visibility_timeout: expected a duration string like "30s", got string "soon"`},
		{"int as string", "PUT", "/v1/queues/q2", `{"max_length":"3"}`, 400,
			`max_length: expected an integer, got string "3"`},
		{"fraction", "PUT", "/v1/queues/q2", `{"max_length":1.5}`, 400,
			`max_length: expected an integer, got number 1.5`},
		{"bool", "PUT", "/v1/queues/q2", `{"async_acks":"yes"}`, 400,
			`async_acks: expected true or false, got string "yes"`},
		{"unknown field", "PUT", "/v1/queues/q2", `{"visibilty_timeout":"3s"}`, 400,
			`visibilty_timeout: unknown field, did you mean "visibility_timeout"?`},
		{"unknown field far", "PUT", "/v1/queues/q2", `{"zzz":1}`, 400,
			`zzz: unknown field (known: async_acks, block_timeout,`},
		{"array element", "PUT", "/v1/topics/t", `{"queues":["q",1]}`, 400,
			`queues[1]: expected a string, got number 1`},
		{"array expected", "POST", "/v1/queues/q/ack", `{"receipts":"a"}`, 400,
			`receipts: expected an array of strings, got string "a"`},
		{"object expected", "POST", "/v1/queues/q/ack", `[1]`, 400,
			`body: expected a JSON object, got an array`},
		{"syntax", "POST", "/v1/queues/q/ack", "{\n bad", 400,
			`invalid JSON at line 2, column 2`},
		{"trailing", "POST", "/v1/queues/q/ack", `{"receipts":["a"]} x`, 400,
			`invalid JSON at line 1, column 20: unexpected data after the object`},
		{"commit offset", "POST", "/v1/streams/s/groups/g/commit", `{"offset":-1}`, 400,
			`offset: expected a non-negative integer, got number -1`},
		{"nack delay", "POST", "/v1/queues/q/nack", `{"receipts":["a"],"delay":5}`, 400,
			`delay: expected a duration string like "30s", got number 5`},
		{"queue not found", "GET", "/v1/queues/rides", "", 404, `queue "rides" not found`},
		{"topic not found", "GET", "/v1/topics/rides", "", 404, `topic "rides" not found`},
		{"stream not found", "GET", "/v1/streams/rides", "", 404, `stream "rides" not found`},
		{"delete not found", "DELETE", "/v1/queues/rides", "", 404, `queue "rides" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e errAnswer
			st := c.do(tc.method, tc.path, tc.body, nil, &e)
			if st != tc.status || !strings.Contains(e.Error, tc.want) {
				t.Fatalf("got %d %q\nwant %d containing %q", st, e.Error, tc.status, tc.want)
			}
			for _, bad := range []string{"Go struct", "broker.", "httpapi.", "json:", "not found: not found", "time:"} {
				if strings.Contains(e.Error, bad) {
					t.Fatalf("error %q shows Go internals (%q)", e.Error, bad)
				}
			}
		})
	}
}

// TestListTopicsAndStreams checks the list endpoints the CLI's ls uses.
func TestListTopicsAndStreams(t *testing.T) {
	c := newServer(t)
	c.do("PUT", "/v1/topics/b", "", nil, nil)
	c.do("PUT", "/v1/topics/a", "", nil, nil)
	c.do("PUT", "/v1/streams/s", "", nil, nil)
	var topics struct{ Topics []string }
	var streams struct{ Streams []string }
	if st := c.do("GET", "/v1/topics", "", nil, &topics); st != 200 || strings.Join(topics.Topics, ",") != "a,b" {
		t.Fatalf("topics: %d %v", st, topics)
	}
	if st := c.do("GET", "/v1/streams", "", nil, &streams); st != 200 || strings.Join(streams.Streams, ",") != "s" {
		t.Fatalf("streams: %d %v", st, streams)
	}
	_ = time.Second
}

// FuzzDecodeBody: any body either decodes, and then the broker's strict
// decoder agrees, or is refused with a message free of Go type names.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{`{"visibility_timeout":"3s","max_length":5}`, `{"visibility_timeout":30}`, `{"x":1}`,
		`[1]`, `{"receipts":["a",1]}`, `{`, `{} x`, `{"dead_letter":null}`, `{"Max_Length":2}`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg broker.QueueConfig
		err := decodeBody(data, &cfg)
		if err == nil {
			var again broker.QueueConfig
			if err := broker.DecodeJSON(data, &again); err != nil {
				t.Fatalf("decodeBody accepted %q, DecodeJSON: %v", data, err)
			}
			return
		}
		for _, bad := range []string{"Go struct", "broker.", "json:", "reflect"} {
			if strings.Contains(err.Error(), bad) {
				t.Fatalf("%q: error %q shows Go internals", data, err)
			}
		}
		var req settleRequest
		_ = decodeBody(data, &req)
	})
}
