package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAggregateScatterGather(t *testing.T) {
	users, rides, promos, broken := newBackend(t, "users"), newBackend(t, "rides"), newBackend(t, "promos"), newBackend(t, "broken")
	users.handle(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"id": "u-%s", "name": "Ada", "consumer": %q}`, r.URL.Path[len("/users/"):], r.Header.Get("X-Request-Id"))
	})
	rides.handle(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `[{"ride": 1, "user": %q}]`, r.URL.Query().Get("user"))
	})
	promos.handle(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	broken.handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
upstreams:
  users: { targets: [{address: %s}] }
  rides: { targets: [{address: %s}] }
  promos: { targets: [{address: %s}] }
  broken: { targets: [{address: %s}] }
routes:
  - match: { path: /home }
    aggregate:
      calls:
        - { name: profile, upstream: users, path: "/users/{query.uid}" }
        - { name: rides, upstream: rides, path: "/rides?user={profile.id}", after: [profile] }
        - { name: promos, upstream: promos, path: /promos, timeout: 100ms, optional: true }
  - match: { path: /strict }
    aggregate:
      calls:
        - { name: profile, upstream: users, path: /users/1 }
        - { name: broken, upstream: broken, path: /x }
`, users.addr(), rides.addr(), promos.addr(), broken.addr()))

	start := time.Now()
	code, body, h := get(t, gw.url+"/home?uid=7")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("the optional call's 100ms timeout did not apply: took %v", el)
	}
	var got struct {
		Profile struct{ ID, Name string }
		Rides   []struct {
			Ride int
			User string
		}
		Promos  any
		Partial bool              `json:"_partial"`
		Errors  map[string]string `json:"_errors"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if got.Profile.ID != "u-7" || len(got.Rides) != 1 || got.Rides[0].User != "u-7" {
		t.Fatalf("sequential call did not use the profile id: %s", body)
	}
	if !got.Partial || got.Promos != nil || got.Errors["promos"] == "" || h.Get("X-Partial-Response") != "1" {
		t.Fatalf("optional timeout not marked partial: %s", body)
	}

	code, body, _ = get(t, gw.url+"/strict")
	if code != 502 || !json.Valid([]byte(body)) {
		t.Fatalf("required call failing: %d %s", code, body)
	}
	var e map[string]string
	_ = json.Unmarshal([]byte(body), &e)
	if e["code"] != "aggregate_failed" {
		t.Fatalf("error body %s", body)
	}
}

func TestAggregateConfigErrors(t *testing.T) {
	path := t.TempDir() + "/g.yaml"
	writeConfig(t, path, `
listen: 127.0.0.1:0
upstreams:
  u: { targets: [{address: 127.0.0.1:1}] }
routes:
  - aggregate:
      calls:
        - { name: a, upstream: u, path: "/x/{b.id}" }
        - { name: b, upstream: nope, path: /y, after: [a] }
`)
	_, err := New(Options{ConfigPath: path})
	if err == nil {
		t.Fatal("accepted")
	}
	if !strings.Contains(err.Error(), "routes[0].aggregate.calls[1].upstream") {
		t.Errorf("error lacks the call's key path: %v", err)
	}
	writeConfig(t, path, `
listen: 127.0.0.1:0
upstreams:
  u: { targets: [{address: 127.0.0.1:1}] }
routes:
  - aggregate:
      calls:
        - { name: a, upstream: u, path: "/x/{b.id}" }
        - { name: b, upstream: u, path: /y, after: [a] }
`)
	_, err = New(Options{ConfigPath: path})
	if err == nil || !strings.Contains(err.Error(), "routes[0].aggregate") || !strings.Contains(err.Error(), "must be listed in after") {
		t.Fatalf("err = %v", err)
	}
}

// TestAggregateCallsCarryRequestIDAndTrace: every sub-request of an
// aggregate route carries the request's X-Request-Id (the gateway's when
// the client sent none) and a traceparent that is a child in the request's
// trace (a new trace when the client sent none, or an invalid one).
func TestAggregateCallsCarryRequestIDAndTrace(t *testing.T) {
	type seen struct{ id, tp string }
	got := make(chan seen, 10)
	capture := func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("X-Request-Id"), r.Header.Get("Traceparent")}
		_, _ = w.Write([]byte(`{}`))
	}
	a, b := newBackend(t, "a"), newBackend(t, "b")
	a.handle(capture)
	b.handle(capture)
	gw := startGateway(t, fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
upstreams:
  a: { targets: [{address: %s}] }
  b: { targets: [{address: %s}] }
routes:
  - match: { path: /agg }
    aggregate:
      calls:
        - { name: one, upstream: a, path: /one }
        - { name: two, upstream: b, path: /two }
`, a.addr(), b.addr()))
	const clientTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for name, hdr := range map[string][]string{
		"no client ids":       nil,
		"client ids":          {"X-Request-Id", "client-id-1", "Traceparent", clientTrace},
		"invalid client ones": {"X-Request-Id", strings.Repeat("x", 200), "Traceparent", "00-zz-bad-01"},
	} {
		t.Run(name, func(t *testing.T) {
			code, body, h := get(t, gw.url+"/agg", hdr...)
			if code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			id := h.Get("X-Request-Id")
			if id == "" || (name == "client ids" && id != "client-id-1") {
				t.Fatalf("response X-Request-Id %q", id)
			}
			var trace string
			spans := map[string]bool{}
			for i := 0; i < 2; i++ {
				s := <-got
				if s.id != id {
					t.Errorf("sub-request X-Request-Id %q, want the request's %q", s.id, id)
				}
				parts := strings.Split(s.tp, "-")
				if len(parts) != 4 || len(parts[1]) != 32 || len(parts[2]) != 16 || parts[1] == strings.Repeat("0", 32) {
					t.Fatalf("sub-request traceparent %q is not a valid W3C traceparent", s.tp)
				}
				if trace == "" {
					trace = parts[1]
				} else if parts[1] != trace {
					t.Errorf("sub-requests in different traces: %s and %s", trace, parts[1])
				}
				spans[parts[2]] = true
				if name == "client ids" && (parts[1] != "4bf92f3577b34da6a3ce929d0e0e4736" || parts[2] == "00f067aa0ba902b7") {
					t.Errorf("traceparent %q is not a child of the client's %q", s.tp, clientTrace)
				}
			}
			if len(spans) != 2 {
				t.Errorf("sub-requests share a span id: %v", spans)
			}
		})
	}
}
