package cors

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func mustNew(t testing.TB, cfg Config) *CORS {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"exact", Config{AllowOrigins: []string{"https://app.example.com", "http://localhost:3000", "http://[::1]:8080"}}, nil},
		{"wildcard", Config{AllowOrigins: []string{"https://*.example.com", "https://*.example.com:8443"}, AllowCredentials: true, MaxAge: time.Hour}, nil},
		{"star", Config{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"}}, nil},
		{"empty", Config{}, []string{"allow_origins: empty"}},
		{"star with credentials", Config{AllowOrigins: []string{"*"}, AllowCredentials: true}, []string{`"*" with allow_credentials`}},
		{"star with others", Config{AllowOrigins: []string{"*", "https://a.com"}}, []string{`"*" with other origins`}},
		{"path", Config{AllowOrigins: []string{"https://a.com/"}}, []string{`origin "https://a.com/": expected scheme://host[:port] without path`}},
		{"no scheme", Config{AllowOrigins: []string{"a.com"}}, []string{`origin "a.com": expected scheme://host[:port]`}},
		{"null", Config{AllowOrigins: []string{"null"}}, []string{`origin "null"`}},
		{"bad port", Config{AllowOrigins: []string{"https://a.com:99999"}}, []string{`port "99999"`}},
		{"inner wildcard", Config{AllowOrigins: []string{"https://a.*.com"}}, []string{`only allowed as a leading`}},
		{"wildcard tld", Config{AllowOrigins: []string{"https://*.com"}}, []string{`at least two labels`}},
		{"bad method", Config{AllowOrigins: []string{"*"}, AllowMethods: []string{"GET POST"}}, []string{`allow_methods: "GET POST": expected a method`}},
		{"bad header", Config{AllowOrigins: []string{"*"}, AllowHeaders: []string{"X:Y"}}, []string{`allow_headers: "X:Y"`}},
		{"star header mixed", Config{AllowOrigins: []string{"*"}, AllowHeaders: []string{"*", "X-A"}}, []string{`allow_headers: "*" with other values`}},
		{"expose star", Config{AllowOrigins: []string{"*"}, ExposeHeaders: []string{"*"}}, []string{`expose_headers: "*"`}},
		{"max age negative", Config{AllowOrigins: []string{"*"}, MaxAge: -time.Second}, []string{`max_age: -1s`}},
		{"max age huge", Config{AllowOrigins: []string{"*"}, MaxAge: 48 * time.Hour}, []string{`expected at most 24h`}},
		{"max age fraction", Config{AllowOrigins: []string{"*"}, MaxAge: 1500 * time.Millisecond}, []string{`whole seconds`}},
		{"all joined", Config{AllowOrigins: []string{"x"}, AllowMethods: []string{"a b"}, MaxAge: -1}, []string{"allow_origins", "allow_methods", "max_age"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate: nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := New(tt.cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestOriginAllowed(t *testing.T) {
	c := mustNew(t, Config{AllowOrigins: []string{"https://App.Example.com", "https://*.example.org", "http://*.dev.test:8080"}})
	tests := []struct {
		origin string
		want   bool
	}{
		{"https://app.example.com", true},
		{"https://APP.example.com", true},
		{"http://app.example.com", false},
		{"https://app.example.com:443", false},
		{"https://app.example.com.evil.com", false},
		{"https://a.example.org", true},
		{"https://a.b.example.org", true},
		{"https://example.org", false},
		{"https://.example.org", false},
		{"https://a..example.org", false},
		{"https://evil.com/.example.org", false},
		{"https://evil.com?.example.org", false},
		{"https://evilexample.org", false},
		{"https://a.example.org:8443", false},
		{"http://x.dev.test:8080", true},
		{"http://x.dev.test", false},
		{"null", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := c.OriginAllowed(tt.origin); got != tt.want {
			t.Errorf("OriginAllowed(%q) = %v, want %v", tt.origin, got, tt.want)
		}
	}
}

type exchange struct {
	method  string
	headers map[string]string
	status  int
	want    map[string]string // header → value; "" = must be absent
	code    string            // error code in a 403 body
	reached bool              // the backend saw the request
}

// run sends each exchange through the middleware to a real server whose
// backend also sets its own CORS headers, as a legacy upstream would.
func run(t *testing.T, c *CORS, tests map[string]exchange) {
	t.Helper()
	var reached bool
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
		w.Header().Set("Access-Control-Allow-Origin", "https://upstream.invalid")
		w.Header().Add("Vary", "Accept-Encoding") // as httputil.ReverseProxy copies headers
		w.Header().Set("X-Total", "3")
		io.WriteString(w, "hello")
	})
	srv := httptest.NewServer(c.Middleware()(backend))
	defer srv.Close()
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			reached = false
			req, _ := http.NewRequest(tt.method, srv.URL+"/x", nil)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if reached != tt.reached {
				t.Errorf("backend reached %v, want %v", reached, tt.reached)
			}
			for k, want := range tt.want {
				got := strings.Join(resp.Header.Values(k), ", ")
				if got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if tt.code != "" {
				var e struct{ Code string }
				if err := json.Unmarshal(body, &e); err != nil || e.Code != tt.code {
					t.Errorf("body %q, want code %q", body, tt.code)
				}
			}
		})
	}
}

func TestMiddlewareCredentials(t *testing.T) {
	c := mustNew(t, Config{
		AllowOrigins:     []string{"https://app.example.com", "https://*.example.org"},
		AllowMethods:     []string{"GET", "PUT", "PATCH"},
		AllowHeaders:     []string{"Content-Type", "Authorization"},
		ExposeHeaders:    []string{"X-Total"},
		AllowCredentials: true,
		MaxAge:           10 * time.Minute,
	})
	const app = "https://app.example.com"
	preflight := func(origin, method, headers string) map[string]string {
		h := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
		if headers != "" {
			h["Access-Control-Request-Headers"] = headers
		}
		return h
	}
	run(t, c, map[string]exchange{
		"preflight ok": {method: "OPTIONS", headers: preflight(app, "PUT", "authorization,content-type"), status: 204, want: map[string]string{
			"Access-Control-Allow-Origin":      app,
			"Access-Control-Allow-Methods":     "GET, PUT, PATCH",
			"Access-Control-Allow-Headers":     "authorization,content-type",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Max-Age":           "600",
			"Access-Control-Expose-Headers":    "",
			"Vary":                             "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
		}},
		"preflight wildcard origin": {method: "OPTIONS", headers: preflight("https://a.b.example.org", "GET", ""), status: 204, want: map[string]string{
			"Access-Control-Allow-Origin":  "https://a.b.example.org",
			"Access-Control-Allow-Headers": "",
		}},
		"preflight bad origin": {method: "OPTIONS", headers: preflight("https://evil.com", "GET", ""), status: 403, code: "cors_forbidden", want: map[string]string{
			"Access-Control-Allow-Origin": "",
		}},
		"preflight bad method": {method: "OPTIONS", headers: preflight(app, "DELETE", ""), status: 403, code: "cors_forbidden"},
		"preflight bad header": {method: "OPTIONS", headers: preflight(app, "PUT", "content-type, x-secret"), status: 403, code: "cors_forbidden"},
		"plain options is forwarded": {method: "OPTIONS", headers: map[string]string{"Origin": app}, status: 200, reached: true, want: map[string]string{
			"Access-Control-Allow-Origin": app,
		}},
		"actual allowed": {method: "GET", headers: map[string]string{"Origin": app}, status: 200, reached: true, want: map[string]string{
			"Access-Control-Allow-Origin":      app, // the upstream's own value is dropped
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers":    "X-Total",
			"Access-Control-Max-Age":           "",
			"Vary":                             "Accept-Encoding, Origin",
		}},
		"actual disallowed": {method: "POST", headers: map[string]string{"Origin": "https://evil.com"}, status: 200, reached: true, want: map[string]string{
			"Access-Control-Allow-Origin":      "",
			"Access-Control-Allow-Credentials": "",
			"Access-Control-Expose-Headers":    "",
			"Vary":                             "Accept-Encoding, Origin",
		}},
		"no origin": {method: "GET", status: 200, reached: true, want: map[string]string{
			"Access-Control-Allow-Origin": "https://upstream.invalid", // not a CORS request: untouched
			"Vary":                        "Origin, Accept-Encoding",
		}},
	})
}

func TestMiddlewareAnyOrigin(t *testing.T) {
	c := mustNew(t, Config{AllowOrigins: []string{"*"}, AllowMethods: []string{"*"}, AllowHeaders: []string{"*"}})
	run(t, c, map[string]exchange{
		"preflight": {method: "OPTIONS", headers: map[string]string{"Origin": "https://x.com", "Access-Control-Request-Method": "PURGE", "Access-Control-Request-Headers": "x-anything"}, status: 204, want: map[string]string{
			"Access-Control-Allow-Origin":      "*",
			"Access-Control-Allow-Methods":     "PURGE",
			"Access-Control-Allow-Headers":     "x-anything",
			"Access-Control-Allow-Credentials": "",
			"Access-Control-Max-Age":           "",
		}},
		"actual": {method: "GET", headers: map[string]string{"Origin": "https://x.com"}, status: 200, reached: true, want: map[string]string{
			"Access-Control-Allow-Origin":      "*",
			"Access-Control-Allow-Credentials": "",
			"Vary":                             "Accept-Encoding",
		}},
	})
}

func TestMiddlewareDefaultMethods(t *testing.T) {
	c := mustNew(t, Config{AllowOrigins: []string{"https://a.com"}})
	run(t, c, map[string]exchange{
		"post": {method: "OPTIONS", headers: map[string]string{"Origin": "https://a.com", "Access-Control-Request-Method": "POST"}, status: 204, want: map[string]string{
			"Access-Control-Allow-Methods":     "GET, HEAD, POST",
			"Access-Control-Allow-Credentials": "",
		}},
		"delete": {method: "OPTIONS", headers: map[string]string{"Origin": "https://a.com", "Access-Control-Request-Method": "DELETE"}, status: 403, code: "cors_forbidden"},
		"header": {method: "OPTIONS", headers: map[string]string{"Origin": "https://a.com", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "content-type"}, status: 403, code: "cors_forbidden"},
	})
}

// TestEmptyHandler checks the headers are set when the handler writes
// nothing at all.
func TestEmptyHandler(t *testing.T) {
	c := mustNew(t, Config{AllowOrigins: []string{"https://a.com"}})
	h := c.Middleware()(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Origin", "https://a.com")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "https://a.com" {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}
}

// TestFlushThroughWrapper checks streaming still works behind the wrapper.
func TestFlushThroughWrapper(t *testing.T) {
	c := mustNew(t, Config{AllowOrigins: []string{"https://a.com"}})
	h := c.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Origin", "https://a.com")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if !w.Flushed || w.Header().Get("Access-Control-Allow-Origin") != "https://a.com" {
		t.Errorf("flushed %v, headers %v", w.Flushed, w.Header())
	}
}

func TestConfigTags(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		if tag := typ.Field(i).Tag.Get("yaml"); !snake.MatchString(tag) {
			t.Errorf("field %s: yaml tag %q", typ.Field(i).Name, tag)
		}
	}
}

func TestAllocs(t *testing.T) {
	c := mustNew(t, Config{AllowOrigins: []string{"https://a.com", "https://*.example.org"}, AllowHeaders: []string{"Content-Type"}, MaxAge: time.Minute})
	h := c.Middleware()(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	pre := httptest.NewRequest("OPTIONS", "/", nil)
	pre.Header.Set("Origin", "https://x.example.org")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	w := &headerWriter{h: http.Header{}}
	// Header values set per response (the echoed origin, Vary) cost a
	// slice each.
	if n := testing.AllocsPerRun(100, func() { clear(w.h); h.ServeHTTP(w, pre) }); n > 3 {
		t.Errorf("preflight: %v allocations, want at most 3", n)
	}
	if n := testing.AllocsPerRun(100, func() { c.OriginAllowed("https://x.example.org") }); n != 0 {
		t.Errorf("OriginAllowed: %v allocations", n)
	}
}

type headerWriter struct{ h http.Header }

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *headerWriter) WriteHeader(int)             {}

func BenchmarkMiddleware(b *testing.B) {
	c := mustNew(b, Config{AllowOrigins: []string{"https://a.com", "https://*.example.org"}, AllowHeaders: []string{"Content-Type"}, ExposeHeaders: []string{"X-Total"}, MaxAge: time.Minute})
	h := c.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	pre := httptest.NewRequest("OPTIONS", "/", nil)
	pre.Header.Set("Origin", "https://x.example.org")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "content-type")
	get := httptest.NewRequest("GET", "/", nil)
	get.Header.Set("Origin", "https://x.example.org")
	none := httptest.NewRequest("GET", "/", nil)
	for name, r := range map[string]*http.Request{"preflight": pre, "actual": get, "no_origin": none} {
		b.Run(name, func(b *testing.B) {
			w := &headerWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}

func TestMethodCase(t *testing.T) {
	c := mustNew(t, Config{AllowOrigins: []string{"https://a.com"}, AllowMethods: []string{"get", "delete", "purge"}})
	run(t, c, map[string]exchange{
		"standard upper-cased": {method: "OPTIONS", headers: map[string]string{"Origin": "https://a.com", "Access-Control-Request-Method": "DELETE"}, status: 204, want: map[string]string{
			"Access-Control-Allow-Methods": "GET, DELETE, purge",
		}},
		"extension method is case-sensitive": {method: "OPTIONS", headers: map[string]string{"Origin": "https://a.com", "Access-Control-Request-Method": "PURGE"}, status: 403, code: "cors_forbidden"},
	})
}
