package experiment

import (
	"math"
	"strings"
	"testing"
)

const good = `title: t
admin: http://127.0.0.1:9901
load: { rate: 10, duration: 2s, requests: [ { url: "http://127.0.0.1:8080/x", method: POST, headers: { Authorization: "Bearer ${TOKEN}" }, body: "{}" } ] }
steady_state:
  probes:
    - { name: up, http: { url: "http://127.0.0.1:8080/" } }
    - { name: slo, sli: { max_error_rate: 1%, max_latency: 200ms, percentile: 99.9 } }
    - { name: m, metric: { url: "http://127.0.0.1:9901/metrics", name: x, min: 0 } }
method:
  - { at: 1s, process: { name: matching-1, action: kill } }
  - { wait: 1s }
  - { toxic: { api: "http://127.0.0.1:8474", proxy: db, add: { name: slow, type: latency, latency: 100ms } } }
rollbacks:
  - { toxic: { api: "http://127.0.0.1:8474", proxy: db, remove: slow } }
  - { route_fault: { route: api, off: true } }
`

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseGoodFile(t *testing.T) {
	e, err := Parse([]byte(good), "e.yaml", env(map[string]string{"TOKEN": "abc"}))
	if err != nil {
		t.Fatal(err)
	}
	if e.Load.Requests[0].Headers["Authorization"] != "Bearer abc" || len(e.Method) != 3 || *e.Method[0].At != 1e9 {
		t.Fatalf("%+v", e)
	}
	cfg, err := e.Load.config()
	if err != nil || cfg.Connections != DefaultLoadConnections || len(cfg.Targets[0].Header) != 1 {
		t.Fatalf("load config %+v %v", cfg, err)
	}
	if got := e.Method[0].label(e); got != "kill matching-1" {
		t.Fatal(got)
	}
}

func TestParseEnvErrors(t *testing.T) {
	_, err := Parse([]byte(good), "e.yaml", env(nil))
	if err == nil || !strings.Contains(err.Error(), "e.yaml:3: ${TOKEN}: environment variable TOKEN is not set") {
		t.Fatalf("unset variable: %v", err)
	}
	_, err = Parse([]byte(good), "e.yaml", env(map[string]string{"TOKEN": "a\nb: c"}))
	if err == nil || !strings.Contains(err.Error(), "e.yaml:3: ${TOKEN}: the value spans several lines") {
		t.Fatalf("multi-line variable: %v", err)
	}
}

func TestParseErrorsNameKeys(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"", "empty"},
		{"title: t\nsteady_state: { probes: [ { name: a, http: { url: http://x/ }, bogus: 1 } ] }", `e.yaml:2:64: steady_state.probes[0].bogus: unknown key "bogus"`},
		{"title: t\nsteady_state: { probes: [ { name: a } ] }", "steady_state.probes[0]: expected exactly one of http, sli and metric, got 0"},
		{"title: t\nsteady_state: { probes: [ { name: a, sli: { max_error_rate: 1% } } ] }", "steady_state.probes[0].sli: an sli probe measures the experiment's own traffic"},
		{"title: t\nsteady_state: { probes: [ { name: a, metric: { url: http://x/, name: m } } ] }", "steady_state.probes[0].metric: no tolerance"},
		{"title: t\nsteady_state: { probes: [ { name: a, http: { url: http://x/ } } ] }\nmethod: [ { wait: 1s, process: { admin: http://x, name: a, action: kill } } ]", "method[0]: expected exactly one of route_fault, toxic, process and wait, got 2"},
		{"title: t\nsteady_state: { probes: [ { name: a, http: { url: http://x/ } } ] }\nmethod: [ { route_fault: { admin: http://x, route: r, clear: true, off: true } } ]", "method[0].route_fault: expected exactly one of set"},
		{"title: t\nsteady_state: { probes: [ { name: a, http: { url: http://x/ } } ] }\nmethod: [ { route_fault: { admin: http://x, route: r, set: { delay_percent: 5 } } } ]", "method[0].route_fault.set: no fault"},
	} {
		_, err := Parse([]byte(c.doc), "e.yaml", nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.doc, err, c.want)
		}
	}
}

// The decoder never panics, and what it accepts is valid.
func FuzzExperimentFile(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("title: t\nsteady_state: { probes: [ { name: a, http: { url: http://x/ } } ] }"))
	f.Add([]byte("title: &a t\nmethod: [ *a ]"))
	f.Add([]byte("load: { rate: 1e308, duration: -1s }"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		e, err := Parse(doc, "f.yaml", env(map[string]string{"TOKEN": "x"}))
		if err != nil {
			if e != nil {
				t.Fatal("an experiment with an error")
			}
			return
		}
		if e.Title == "" || len(e.SteadyState.Probes) == 0 {
			t.Fatalf("accepted without title or probes: %q", doc)
		}
		if e.Load != nil {
			if _, err := e.Load.config(); err != nil {
				t.Fatalf("accepted a load package load refuses: %v", err)
			}
		}
		for _, a := range append(append([]Action{}, e.Method...), e.Rollbacks...) {
			_ = a.label(e)
		}
	})
}

func TestMetricValue(t *testing.T) {
	text := `# TYPE req counter
req{route="a",code="200"} 5
req{route="a",code="503"} 2
req{route="b",code="200"} 7
# TYPE lat histogram
lat_bucket{le="+Inf"} 4
lat_sum 1.5
lat_count 4
up 1
`
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
		err    string
	}{
		{"req", nil, 14, ""},
		{"req", map[string]string{"route": "a"}, 7, ""},
		{"req", map[string]string{"route": "c"}, 0, "no series"},
		{"lat_count", nil, 4, ""},
		{"lat_sum", nil, 1.5, ""},
		{"lat", nil, 0, "histogram"},
		{"up", nil, 1, ""},
		{"nope", nil, 0, "no metric"},
	} {
		v, err := metricValue(strings.NewReader(text), c.name, c.labels)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || v != c.want {
			t.Errorf("%s %v: %v %v, want %v", c.name, c.labels, v, err, c.want)
		}
	}
	if _, err := metricValue(strings.NewReader("garbage{{{"), "x", nil); err == nil {
		t.Error("garbage parsed")
	}
}

func TestQuantile(t *testing.T) {
	bars := []bar{{micros: 3000, count: 1}, {micros: 1000, count: 98}, {micros: 2000, count: 1}}
	if q := quantile(bars, 50); q != 1 {
		t.Fatal(q)
	}
	if q := quantile(bars, 98); q != 1 {
		t.Fatal(q)
	}
	if q := quantile(bars, 99); q != 2 {
		t.Fatal(q)
	}
	if q := quantile(bars, 100); q != 3 {
		t.Fatal(q)
	}
	if q := quantile(nil, 99); !math.IsNaN(q) {
		t.Fatal(q)
	}
}
