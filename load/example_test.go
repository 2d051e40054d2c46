package load_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/switchyard/switchyard/load"
)

// Offer 100 requests per second for half a second to a service and check
// the outcome against an SLO.
func ExampleRun() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello"))
	}))
	defer srv.Close()

	slo, err := load.ParseSLO("errors<1%")
	if err != nil {
		panic(err)
	}
	res, err := load.Run(context.Background(), load.Config{
		Targets:     []load.Target{{URL: srv.URL}},
		Rate:        100,
		Duration:    500 * time.Millisecond,
		Connections: 8,
		SLO:         slo,
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("requests %d, errors %d, availability %.0f%%, SLO met: %v\n",
		res.Requests, res.Errors, res.Availability, *res.SLOMet)
	// Output: requests 50, errors 0, availability 100%, SLO met: true
}
