package rides_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/rides"
	"github.com/switchyard/switchyard/kit/store"
)

// A rider requests a ride through the API (as the gateway forwards it:
// identity in X-Consumer and X-Scopes) and reads it back; the stream
// holds the event the outbox will publish once Run relays it.
func Example() {
	dir, _ := os.MkdirTemp("", "rides-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "rides.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	svc, err := rides.New(ctx, db, nil, rides.Config{}) // nil bus: API only, no Run
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()

	call := func(method, path, body string) string {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set(hitch.HeaderUser, "ann")
		req.Header.Set(hitch.HeaderScopes, hitch.RoleRider)
		req.Header.Set("Idempotency-Key", "first-ride")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return fmt.Sprintf("%d %s", res.StatusCode, b)
	}
	created := call("POST", "/v1/rides", `{"from": {"lat": 40.758, "lon": -73.9855}, "to": {"lat": 40.7128, "lon": -74.006}}`)
	id := created[strings.Index(created, `"ride_id":"`)+11:][:36]
	fmt.Println(strings.Replace(created, id, "ID", 1))
	again := call("POST", "/v1/rides", `{"from": {"lat": 40.758, "lon": -73.9855}, "to": {"lat": 40.7128, "lon": -74.006}}`)
	fmt.Println("same key, same ride:", strings.Contains(again, id))
	got := call("GET", "/v1/rides/"+id, "")
	fmt.Println(strings.Contains(got, `"status":"searching"`), strings.Contains(got, `"rider_id":"ann"`))
	evs, _ := svc.Events(ctx, id)
	for _, e := range evs {
		fmt.Println(e.Version, e.Type)
	}
	// Output:
	// 202 {"ride_id":"ID","status":"searching"}
	//
	// same key, same ride: true
	// true true
	// 1 ride.requested
}
