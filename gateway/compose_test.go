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
