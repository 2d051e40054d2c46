package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Progress carries each interval as the timeline has it and the
// interval's latencies: summed over the calls they are the run's.
func TestProgressCarriesIntervals(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	var reqs, errs, latencies int64
	var ivs []Interval
	res, err := Run(context.Background(), Config{
		Targets: []Target{{URL: srv.URL + "/"}, {URL: srv.URL + "/bad"}}, Rate: 100, Duration: 2 * time.Second,
		Interval: 500 * time.Millisecond, Connections: 8,
		Progress: func(p Progress) {
			reqs += p.Interval.Requests
			errs += p.Interval.Errors
			ivs = append(ivs, p.Interval)
			if p.Latencies != nil {
				latencies += p.Latencies.TotalCount()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// (A last sliver shorter than a tenth of an interval is folded into
	// the totals only, neither in the timeline nor in Progress.)
	var tlReqs, tlErrs int64
	for _, iv := range res.Timeline {
		tlReqs += iv.Requests
		tlErrs += iv.Errors
	}
	if reqs != tlReqs || errs != tlErrs || latencies != reqs || errs == 0 || reqs < res.Requests*9/10 {
		t.Fatalf("progress summed %d requests, %d errors, %d latencies; the timeline %d, %d; the run %d", reqs, errs, latencies, tlReqs, tlErrs, res.Requests)
	}
	for i, iv := range ivs {
		if i < len(res.Timeline) && iv != res.Timeline[i] {
			t.Fatalf("interval %d: %+v, timeline %+v", i, iv, res.Timeline[i])
		}
	}
}
