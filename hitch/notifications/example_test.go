package notifications_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/notifications"
)

// A rider's SSE stream: the gateway sets X-Consumer and X-Scopes from the
// token; an event on the bus (here handed to Push directly, as Run does)
// becomes the rider's driver_found.
func Example() {
	svc, _ := notifications.New(context.Background(), nil, nil, notifications.Config{})
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/events", nil)
	req.Header.Set(hitch.HeaderUser, "rider-1")
	req.Header.Set(hitch.HeaderScopes, hitch.RoleRider)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close() // the client joined before the head was sent

	svc.Push(hitch.KindRideMatched, "ev-42", []byte(`{"ride_id":"ride-7","rider_id":"rider-1","driver_id":"driver-3","at":"2026-12-04T18:00:00Z"}`))

	br := bufio.NewReader(resp.Body)
	for {
		line, _ := br.ReadString('\n')
		if strings.HasPrefix(line, "id:") || strings.HasPrefix(line, "event:") || strings.HasPrefix(line, "data:") {
			fmt.Print(line)
		}
		if strings.HasPrefix(line, "data:") {
			break
		}
	}
	// Output:
	// id: ev-42
	// event: driver_found
	// data: {"ride_id":"ride-7","rider_id":"rider-1","driver_id":"driver-3","from":{"lat":0,"lon":0},"to":{"lat":0,"lon":0},"at":"2026-12-04T18:00:00Z"}
}
