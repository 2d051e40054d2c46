package transform

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchDoc is a 1.6 KiB API response.
var benchDoc = `{"id":"ride_8f3a","status":"completed","fare":{"amount":2450,"currency":"EUR","breakdown":[{"k":"base","v":300},{"k":"distance","v":1800},{"k":"time","v":350}]},` +
	`"driver":{"id":"drv_1","name":"Ann Example","phone":"+49 30 1234567","license":"B-XY-123","rating":4.91,"vehicle":{"make":"Toyota","model":"Prius","plate":"B-XY 123"}},` +
	`"rider":{"id":"usr_9","email":"rider@example.com","payment":{"type":"card","last4":"4242","token":"tok_abcdef0123456789"}},` +
	`"stops":[` + strings.Repeat(`{"city":"Berlin","street":"Unter den Linden 1","lat":52.5170365,"lon":13.3888599,"eta":"2026-03-01T12:00:00Z","notes":"ring twice"},`, 6) +
	`{"city":"Potsdam","street":"Am Neuen Garten","lat":52.41,"lon":13.07,"eta":"2026-03-01T12:40:00Z","notes":""}],` +
	`"internal":{"trace":"` + strings.Repeat("0123456789abcdef", 8) + `","shard":17,"flags":["a","b","c"]}}`

func BenchmarkFilterJSON(b *testing.B) {
	src := []byte(benchDoc)
	root := compileAllow([]string{"id", "status", "fare.amount", "driver.name", "driver.vehicle", "stops.city", "stops.eta"})
	dst := make([]byte, 0, len(src))
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		dst = filterJSON(dst[:0], src, root)
	}
}

func BenchmarkResponseHook(b *testing.B) {
	rt, err := NewResponse(Response{
		Headers:   Headers{Set: map[string]string{"Cache-Control": "no-store"}, Remove: []string{"Server"}},
		JSONAllow: []string{"id", "status", "fare.amount", "driver.name", "driver.vehicle", "stops.city", "stops.eta"},
	})
	if err != nil {
		b.Fatal(err)
	}
	hook := rt.Hook()
	body := []byte(benchDoc)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}, "Server": {"x"}},
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
		if err := hook(resp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRequestApply(b *testing.B) {
	rt, err := NewRequest(Request{
		Headers: Headers{Set: map[string]string{"X-Api-Version": "2"}, Remove: []string{"Cookie"}, Rename: map[string]string{"X-User": "X-Consumer"}},
		Path:    &PathRewrite{Regex: `^/v1/rides/(\d+)$`, Replace: "/rides/$1"},
		Query:   &Query{Remove: []string{"debug"}, Set: map[string]string{"format": "json"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	prefix, err := NewRequest(Request{Path: &PathRewrite{Prefix: "/v1", Replace: "/v2"}})
	if err != nil {
		b.Fatal(err)
	}
	headersOnly, err := NewRequest(Request{Headers: Headers{Set: map[string]string{"X-Api-Version": "2"}, Remove: []string{"Cookie"}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		t    *RequestTransform
	}{{"full", rt}, {"prefix", prefix}, {"headers", headersOnly}} {
		b.Run(c.name, func(b *testing.B) {
			base := httptest.NewRequest("GET", "/v1/rides/42?debug=1&x=2", nil)
			base.Header.Set("Cookie", "a=1")
			base.Header.Set("X-User", "alice")
			r := new(http.Request)
			b.ReportAllocs()
			for b.Loop() {
				*r = *base
				u := *base.URL
				r.URL = &u
				r.Header = http.Header{"Cookie": base.Header["Cookie"], "X-User": base.Header["X-User"]}
				c.t.Apply(r)
			}
		})
	}
}

func BenchmarkMaxBytes(b *testing.B) {
	h := MaxBytes(1 << 20)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("POST", "/", strings.NewReader("hello"))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
