package resilient

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// benchCall sends GETs through rt to a real backend on 127.0.0.1 and reads
// each body.
func benchCall(b *testing.B, wrap func(http.RoundTripper) http.RoundTripper) {
	srv := newBackend(b, func(n int64, w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newTransport(b)
	rt := wrap(tr)
	req := mustGet(b, srv.URL)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkBareTransport is the baseline: an http.Transport alone.
func BenchmarkBareTransport(b *testing.B) {
	benchCall(b, func(tr http.RoundTripper) http.RoundTripper { return tr })
}

// BenchmarkStack is every layer but hedging, as New stacks them.
func BenchmarkStack(b *testing.B) {
	benchCall(b, func(tr http.RoundTripper) http.RoundTripper {
		o := fullOptions(tr)
		o.Hedge = nil
		rt, err := New(o)
		if err != nil {
			b.Fatal(err)
		}
		return rt
	})
}

// BenchmarkStackHedged adds hedging with a delay no call reaches: the cost
// of arming a hedge (a goroutine, a timer, a context) on every call.
func BenchmarkStackHedged(b *testing.B) {
	benchCall(b, func(tr http.RoundTripper) http.RoundTripper {
		o := fullOptions(tr)
		o.Hedge = &HedgeConfig{Delay: time.Hour}
		rt, err := New(o)
		if err != nil {
			b.Fatal(err)
		}
		return rt
	})
}

// BenchmarkLayersOnly measures the layers alone, over a transport that
// answers at once without a network, so the overhead is not lost in the
// noise of a loopback round trip.
func BenchmarkLayersOnly(b *testing.B) {
	for _, c := range []struct {
		name  string
		hedge *HedgeConfig
	}{{"NoHedge", nil}, {"Hedge", &HedgeConfig{Delay: time.Hour}}} {
		b.Run(c.name, func(b *testing.B) {
			stub := RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
			})
			o := fullOptions(stub)
			o.Hedge = c.hedge
			rt, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			req := mustGet(b, "http://payments.internal/x")
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}
