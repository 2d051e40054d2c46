package chaos

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseFaultHeader(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want HeaderChoice
	}{
		{"1", true, HeaderChoice{}},
		{"", true, HeaderChoice{}},
		{"delay=250ms", true, HeaderChoice{Delay: 250 * time.Millisecond, HasDelay: true}},
		{"delay=250", true, HeaderChoice{Delay: 250 * time.Millisecond, HasDelay: true}},
		{" abort = 503 ; delay_percent=5,abort_percent=12.5 ,", true,
			HeaderChoice{AbortStatus: 503, HasAbort: true, DelayPercent: 5, HasDelayPct: true, AbortPercent: 12.5, HasAbtPct: true}},
		{"ABORT=500", true, HeaderChoice{AbortStatus: 500, HasAbort: true}},
		{"abort=600", false, HeaderChoice{}},
		{"abort=199", false, HeaderChoice{}},
		{"abort=5e2", false, HeaderChoice{}},
		{"delay=-1ms", false, HeaderChoice{}},
		{"delay=2h", false, HeaderChoice{}},
		{"delay=9223372036854775807", false, HeaderChoice{}},
		{"delay_percent=NaN", false, HeaderChoice{}},
		{"delay_percent=101", false, HeaderChoice{}},
		{"delay=1s,x", false, HeaderChoice{}},
		{"what=1", false, HeaderChoice{}},
		{"delay=1s" + strings.Repeat(" ", 300), false, HeaderChoice{}},
	} {
		got, ok := ParseFaultHeader(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("%q: %+v %v, want %+v %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// The header's value never escapes its bounds, whatever it is.
func FuzzFaultHeader(f *testing.F) {
	for _, s := range []string{"1", "delay=250ms", "abort=503;delay=1", "delay_percent=50, abort_percent=1e1", "delay=1h", "abort=599,abort=200", "=", ",;,", "delay=0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		hc, ok := ParseFaultHeader(v)
		if !ok {
			if hc != (HeaderChoice{}) {
				t.Fatalf("%q: refused but chose %+v", v, hc)
			}
			return
		}
		if len(v) > maxHeaderValue {
			t.Fatalf("%q: accepted %d bytes", v, len(v))
		}
		if hc.HasDelay && (hc.Delay < 0 || hc.Delay > MaxRouteDelay) {
			t.Fatalf("%q: delay %s", v, hc.Delay)
		}
		if hc.HasAbort && (hc.AbortStatus < 200 || hc.AbortStatus > 599) {
			t.Fatalf("%q: status %d", v, hc.AbortStatus)
		}
		for _, p := range []float64{hc.DelayPercent, hc.AbortPercent} {
			if !(p >= 0 && p <= 100) {
				t.Fatalf("%q: percent %v", v, p)
			}
		}
		if !strings.Contains(v, "=") && hc != (HeaderChoice{}) {
			t.Fatalf("%q: chose %+v without a key", v, hc)
		}
		// And a request carrying it is handled within the bounds.
		rf, _ := NewRouteFaults(RouteFaultsOptions{})
		mw := rf.Middleware("r")
		rf.SetRoutes(map[string]*RouteFault{"r": {Header: "x-f", MaxDelay: time.Millisecond}})
		h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-F", v)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 204 && (w.Code < 200 || w.Code > 599) {
			t.Fatalf("%q: status %d", v, w.Code)
		}
	})
}

// A route without a fault costs no allocation; nor does one whose header
// the request does not carry.
func TestNoFaultAllocatesNothing(t *testing.T) {
	rf, _ := NewRouteFaults(RouteFaultsOptions{})
	plain := rf.Middleware("plain")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	hdr := rf.Middleware("hdr")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	rf.SetRoutes(map[string]*RouteFault{"plain": nil, "hdr": {Header: "x-fault", AbortStatus: 503}})
	req := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	for name, h := range map[string]http.Handler{"no fault": plain, "header absent": hdr} {
		// The least of a few measurements: AllocsPerRun counts every
		// goroutine's allocations, and earlier tests' may still run.
		n := testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, req) })
		for i := 0; i < 4 && n != 0; i++ {
			n = min(n, testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, req) }))
		}
		if n != 0 {
			t.Errorf("%s: %v allocations per request", name, n)
		}
	}
}

// Percentages follow the random source: with a fixed sequence, exactly
// the requests under the share are hit.
func TestPercentDecidesWithRand(t *testing.T) {
	seq := []float64{0.05, 0.5, 0.09, 0.95}
	i := 0
	rf, _ := NewRouteFaults(RouteFaultsOptions{Rand: func() float64 { v := seq[i%len(seq)]; i++; return v }})
	pct := 10.0
	h := rf.Middleware("r")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	rf.SetRoutes(map[string]*RouteFault{"r": {AbortStatus: 500, AbortPercent: &pct}})
	var codes []int
	for range seq {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		codes = append(codes, w.Code)
	}
	if codes[0] != 500 || codes[1] != 200 || codes[2] != 500 || codes[3] != 200 {
		t.Fatalf("codes %v", codes)
	}
}

func BenchmarkNoFault(b *testing.B) {
	rf, _ := NewRouteFaults(RouteFaultsOptions{})
	h := rf.Middleware("plain")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	rf.SetRoutes(map[string]*RouteFault{"plain": nil})
	req := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
