package registry

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/kit/discovery"
)

func serve(t *testing.T) (*Registry, *httptest.Server) {
	t.Helper()
	r := open(t, Config{})
	srv := httptest.NewServer(Handler(r))
	t.Cleanup(srv.Close)
	return r, srv
}

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPAPI(t *testing.T) {
	_, srv := serve(t)
	u := srv.URL + "/v1/services/rides/instances/a"
	code, body := call(t, "PUT", u, `{"address":"127.0.0.1:9000","ttl":"5s","tags":["v2"]}`)
	var in discovery.Instance
	if code != 200 || !strings.Contains(body, `"state":"up"`) || json.Unmarshal([]byte(body), &in) != nil || in.Lease == "" {
		t.Fatalf("register: %d %s", code, body)
	}
	call := func(t *testing.T, method, url, body string) (int, string) { // the registrant: with its lease
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(LeaseHeader, in.Lease)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call(t, "PUT", u+"/heartbeat", ""); code != 200 {
		t.Fatalf("heartbeat: %d %s", code, body)
	}
	if code, body := call(t, "PUT", u+"/state", `{"state":"draining"}`); code != 200 || !strings.Contains(body, "draining") {
		t.Fatalf("drain: %d %s", code, body)
	}
	code, body = call(t, "GET", srv.URL+"/v1/services/rides", "")
	var snap discovery.ServiceSnapshot
	if code != 200 || json.Unmarshal([]byte(body), &snap) != nil || len(snap.Instances) != 1 || snap.Instances[0].Tags[0] != "v2" {
		t.Fatalf("get: %d %s", code, body)
	}
	if code, body := call(t, "GET", srv.URL+"/v1/services", ""); code != 200 || !strings.Contains(body, `"name":"rides"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, _ := call(t, "DELETE", u, ""); code != 204 {
		t.Fatalf("deregister: %d", code)
	}
	if code, body := call(t, "PUT", u+"/heartbeat", ""); code != 404 || !strings.Contains(body, "not_registered") {
		t.Fatalf("heartbeat after deregister: %d %s", code, body)
	}
	if code, _ := call(t, "GET", srv.URL+"/healthz", ""); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
}

func TestHTTPHostileInput(t *testing.T) {
	_, srv := serve(t)
	u := srv.URL + "/v1/services/rides/instances/a"
	cases := []struct {
		name, method, url, body string
		code                    int
		want                    string
	}{
		{"unknown field", "PUT", u, `{"address":"h:1","weight":3}`, 400, "unknown field"},
		{"trailing data", "PUT", u, `{"address":"h:1"} {}`, 400, "after the JSON value"},
		{"not json", "PUT", u, `address=h:1`, 400, "decoding JSON"},
		{"huge body", "PUT", u, `{"address":"h:1","meta":{"k":"` + strings.Repeat("x", discovery.MaxBody) + `"}}`, 413, "body_too_large"},
		{"body names other service", "PUT", u, `{"service":"cars","address":"h:1"}`, 400, "path"},
		{"bad address", "PUT", u, `{"address":"h"}`, 400, "host:port"},
		{"bad ttl", "PUT", u, `{"address":"h:1","ttl":"forever"}`, 400, "duration"},
		{"bad service path", "PUT", srv.URL + "/v1/services/RIDES/instances/a", `{"address":"h:1"}`, 400, "service name"},
		{"bad state", "PUT", u + "/state", `{"state":"gone"}`, 400, "state"},
		{"bad index", "GET", srv.URL + "/v1/services/rides?index=-1", "", 400, "index"},
		{"bad wait", "GET", srv.URL + "/v1/services/rides?index=1&wait=x", "", 400, "wait"},
		{"wait without index", "GET", srv.URL + "/v1/services/rides?wait=1s", "", 400, "index"},
		{"bad name get", "GET", srv.URL + "/v1/services/a%20b", "", 400, "service name"},
		{"unknown endpoint", "POST", srv.URL + "/v1/nothing", "", 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := call(t, c.method, c.url, c.body)
			if code != c.code || !strings.Contains(body, c.want) {
				t.Errorf("%d %s; want %d mentioning %q", code, body, c.code, c.want)
			}
		})
	}
}

func TestHTTPLongPoll(t *testing.T) {
	r, srv := serve(t)
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/v1/services/rides?index=0&wait=30s")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- resp.Header.Get(IndexHeader) + " " + string(b)
	}()
	if _, err := r.Register(reg("rides", "a", "127.0.0.1:1", discovery.DefaultTTL)); err != nil {
		t.Fatal(err)
	}
	s := <-got
	if !strings.HasPrefix(s, "1 ") || !strings.Contains(s, `"id":"a"`) {
		t.Fatalf("long-poll answer: %s", s)
	}
}

func FuzzDecodeRegistration(f *testing.F) {
	f.Add(`{"service":"rides","id":"a","address":"127.0.0.1:9000","tags":["v1"],"meta":{"k":"v"},"health_url":"http://h:1/x","ttl":"5s"}`)
	f.Add(`{"address":"[::1]:80"}`)
	f.Add(`{"ttl":"-1s"}`)
	f.Add(`{"meta":{"\u0000":"x"}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		reg, err := decodeRegistration(strings.NewReader(body))
		if err != nil {
			return
		}
		reg = reg.WithDefaults()
		if reg.Validate() != nil {
			return
		}
		// A valid registration survives the registry and a JSON round trip.
		r, err := Open(Config{ReapInterval: 1 << 40})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		in, err := r.Register(reg)
		if err != nil {
			t.Fatalf("valid registration refused: %v", err)
		}
		b, _ := json.Marshal(in.Registration)
		back, err := decodeRegistration(strings.NewReader(string(b)))
		if err != nil || back.Validate() != nil || back.Address != reg.Address || back.TTL != reg.TTL {
			t.Fatalf("round trip: %+v, %v", back, err)
		}
	})
}
