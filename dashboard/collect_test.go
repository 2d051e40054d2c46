package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
)

// clock is a settable clock for rates.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestSnapshotRates checks the rates computed between two snapshots: per
// target from the admin counters, per route and for the gateway from the
// request counter and duration histogram, with nothing on the first.
func TestSnapshotRates(t *testing.T) {
	st := Status{ConfigFile: "g.yaml", InFlight: 3,
		Routes: []Route{{Name: "api", PathPrefix: "/api", Upstream: "pool"}},
		Upstreams: []Upstream{{Name: "pool", Balance: "round_robin", Targets: []Target{
			{Address: "127.0.0.1:1", Healthy: true, Available: true, Circuit: "closed", Requests: 100, Failures: 0},
			{Address: "127.0.0.1:2", Healthy: true, Available: true, Circuit: "open", Requests: 50, Failures: 10},
		}}}}
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_requests_total"}, []string{"route", "upstream", "code"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchyard_request_duration_seconds",
		Buckets: []float64{0.01, 0.1, 1}}, []string{"route", "upstream"})
	reg.MustRegister(reqs, dur)
	clk := &clock{t: time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)}
	c := newCollector(Sources{
		Status:  func(context.Context) (Status, error) { return st, nil },
		Metrics: reg.Gather,
	}, clk.now, time.Second)

	first := c.collect(context.Background())
	if first.Upstreams[0].Targets[0].RPS != 0 || first.Gateway.RPS != 0 {
		t.Fatalf("rates on the first snapshot: %+v", first)
	}
	// Two seconds later: target 1 took 200 more (none failed), target 2
	// 20 more (10 failed); the route answered 100, 10 of them 503, 90 in
	// under 10 ms and 10 between 100 ms and 1 s.
	st.Upstreams[0].Targets[0].Requests = 300
	st.Upstreams[0].Targets[1].Requests, st.Upstreams[0].Targets[1].Failures = 70, 20
	reqs.WithLabelValues("api", "pool", "200").Add(90)
	reqs.WithLabelValues("api", "pool", "503").Add(10)
	for i := 0; i < 90; i++ {
		dur.WithLabelValues("api", "pool").Observe(0.005)
	}
	for i := 0; i < 10; i++ {
		dur.WithLabelValues("api", "pool").Observe(0.5)
	}
	clk.t = clk.t.Add(2 * time.Second)
	s := c.collect(context.Background())

	t1, t2 := s.Upstreams[0].Targets[0], s.Upstreams[0].Targets[1]
	if t1.RPS != 100 || t1.ErrorRate != 0 {
		t.Errorf("target 1: rps %v error rate %v, want 100 and 0", t1.RPS, t1.ErrorRate)
	}
	if t2.RPS != 10 || t2.ErrorRate != 0.5 || t2.Circuit != "open" {
		t.Errorf("target 2: rps %v error rate %v circuit %q, want 10, 0.5, open", t2.RPS, t2.ErrorRate, t2.Circuit)
	}
	if u := s.Upstreams[0]; u.RPS != 110 || u.ErrorRate != 0.045 { // 10/220, three decimals
		t.Errorf("upstream: rps %v error rate %v, want 110 and 0.045", u.RPS, u.ErrorRate)
	}
	r := s.Routes[0]
	if r.RPS != 50 || r.ErrorRate != 0.1 {
		t.Errorf("route: rps %v error rate %v, want 50 and 0.1", r.RPS, r.ErrorRate)
	}
	if r.P50ms <= 0 || r.P50ms > 10 || r.P99ms < 100 || r.P99ms > 1000 {
		t.Errorf("route: p50 %v ms (want in (0,10]), p99 %v ms (want in [100,1000])", r.P50ms, r.P99ms)
	}
	if s.Gateway.RPS != 50 || s.Gateway.ErrorRate != 0.1 || s.Gateway.InFlight != 3 {
		t.Errorf("gateway totals: %+v", s.Gateway)
	}

	// A counter that went back (a reload rebuilt the target) gives no rate.
	st.Upstreams[0].Targets[0].Requests = 5
	clk.t = clk.t.Add(time.Second)
	s = c.collect(context.Background())
	if got := s.Upstreams[0].Targets[0].RPS; got != 0 {
		t.Errorf("after a counter reset: rps %v, want 0", got)
	}

	// The JSON the page reads: the field names it uses.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"time":`, `"interval_ms":1000`, `"gateway":{`, `"routes":[`, `"upstreams":[`,
		`"targets":[`, `"circuit":"open"`, `"rps":`, `"error_rate":`, `"latency_ewma_ms":`, `"in_flight":`,
		`"brokers":{"available":false`, `"slos":{"available":false,"items":[]}`, `"rollouts":{"available":false`,
		`"faults":{"available":false`, `"traces":{"available":false`, `"processes":{"available":false`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("snapshot JSON lacks %s:\n%s", key, b)
		}
	}
}

// TestStatusFailure: a failing status source is reported, the other
// panels still come.
func TestStatusFailure(t *testing.T) {
	c := newCollector(Sources{
		Status: func(context.Context) (Status, error) { return Status{}, errors.New("admin down") },
		Faults: func(context.Context) ([]Fault, error) { return []Fault{{Route: "api", Active: true}}, nil },
		SLOs:   func(context.Context) ([]SLO, error) { return nil, errors.New("slo store broken") },
	}, time.Now, time.Second)
	s := c.collect(context.Background())
	if s.Error != "admin down" || len(s.Routes) != 0 || s.Routes == nil {
		t.Errorf("error %q routes %v", s.Error, s.Routes)
	}
	if !s.Faults.Available || len(s.Faults.Items) != 1 {
		t.Errorf("faults: %+v", s.Faults)
	}
	if !s.SLOs.Available || s.SLOs.Error != "slo store broken" {
		t.Errorf("slos: %+v", s.SLOs)
	}
}

// The admin contract's example answers (docs: BRIEF-OPS-CONTRACT), as the
// SLO, rollout and fault endpoints will serve them.
const (
	fixtureSLOs = `{"slos":[{"name":"api-availability","kind":"availability","route":"api","upstream":"",
  "objective":0.999,"window":"672h0m0s","threshold":"","good":123456,"total":123500,"sli":0.99964,
  "budget_remaining":0.64,"alerts":[{"name":"fast-burn","severity":"page","burn_rate":14.4,
  "long_window":"1h0m0s","short_window":"5m0s","long_burn":15.2,"short_burn":20.1,
  "firing":true,"since":"2026-12-04T21:30:00Z"}],"extra":"fine"}]}`
	fixtureRollouts = `{"rollouts":[{"upstream":"rides","strategy":"canary","state":"progressing",
  "step":2,"steps":4,"canary_weight":25,"stable":["127.0.0.1:9001"],"canary":["127.0.0.1:9002"],
  "analysis":{"stable":{"requests":100,"error_rate":0.0,"p99_ms":12.5},
              "canary":{"requests":30,"error_rate":0.2,"p99_ms":40.1},
              "verdict":"fail","reason":"canary error rate 0.2 > stable 0 + 0.01"},
  "started":"2026-12-04T21:00:00Z","updated":"2026-12-04T21:05:00Z","message":"step 2 of 4"}]}`
	fixtureFaults = `{"faults":[{"route":"api","active":true,"delay":"200ms","delay_percent":10,
  "abort_status":503,"abort_percent":5,"header":"x-switchyard-fault","injected_delays":12,"injected_aborts":3}]}`
	fixtureTraces = `{"traces":[{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","root":"GET /api","service":"switchyard-gateway",
  "start":"2026-12-04T21:00:00Z","duration_ns":1500000000,"error":true,"slow":true,"sampled":true},
  {"trace_id":"\"><img src=x>","root":"bad id","start":"2026-12-04T21:00:00Z"}]}`
	fixtureStatus = `{"config_file":"g.yaml","loaded_at":"2026-12-04T21:00:00Z","in_flight":0,
  "routes":[{"name":"api","path_prefix":"/api","upstream":"pool"}],
  "upstreams":[{"name":"pool","balance":"round_robin","targets":[{"address":"127.0.0.1:1","weight":1,
  "healthy":true,"draining":false,"ejected":false,"ejections":0,"available":true,"circuit":"closed",
  "in_flight":0,"requests":0,"failures":0,"latency_ewma_ms":0}]}]}`
)

// adminStub serves the given paths' JSON; anything else is 404.
func adminStub(answers map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := answers[r.URL.Path]
		if !ok {
			http.Error(w, `{"error":"no admin endpoint"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	})
}

// TestContractShapes decodes the contract's example answers through
// FromAdmin, and shows "not available" for endpoints answering 404.
func TestContractShapes(t *testing.T) {
	src := FromAdmin(adminStub(map[string]string{"/admin/status": fixtureStatus, "/admin/slos": fixtureSLOs,
		"/admin/rollouts": fixtureRollouts, "/admin/faults": fixtureFaults, "/admin/traces": fixtureTraces}), "/admin/x/processes")
	s := newCollector(src, time.Now, time.Second).collect(context.Background())
	if s.Error != "" || len(s.Upstreams) != 1 || s.Upstreams[0].Targets[0].Address != "127.0.0.1:1" {
		t.Fatalf("status: %q %+v", s.Error, s.Upstreams)
	}
	slo := s.SLOs.Items
	if !s.SLOs.Available || len(slo) != 1 || slo[0].BudgetRemaining != 0.64 || slo[0].Objective != 0.999 ||
		len(slo[0].Alerts) != 1 || !slo[0].Alerts[0].Firing || slo[0].Alerts[0].ShortBurn != 20.1 || slo[0].Window != "672h0m0s" {
		t.Errorf("slos: %+v", s.SLOs)
	}
	ro := s.Rollouts.Items
	if !s.Rollouts.Available || len(ro) != 1 || ro[0].CanaryWeight != 25 || ro[0].Analysis == nil ||
		ro[0].Analysis.Verdict != "fail" || ro[0].Analysis.Canary.ErrorRate != 0.2 || ro[0].Canary[0] != "127.0.0.1:9002" {
		t.Errorf("rollouts: %+v", s.Rollouts)
	}
	fa := s.Faults.Items
	if !s.Faults.Available || len(fa) != 1 || fa[0].AbortStatus != 503 || fa[0].Delay != "200ms" || fa[0].InjectedAborts != 3 {
		t.Errorf("faults: %+v", s.Faults)
	}
	if tr := s.Traces.Items; !s.Traces.Available || len(tr) != 1 || tr[0].ID != "4bf92f3577b34da6a3ce929d0e0e4736" || !tr[0].Error {
		t.Errorf("traces (the one with a bad id dropped): %+v", s.Traces)
	}
	if s.Processes.Available {
		t.Errorf("processes served by nobody shown as available: %+v", s.Processes)
	}

	// Before the owners' endpoints exist: not available, not an error.
	s = newCollector(FromAdmin(adminStub(map[string]string{"/admin/status": fixtureStatus}), ""), time.Now, time.Second).collect(context.Background())
	for name, p := range map[string]Panel[Fault]{"faults": s.Faults} {
		if p.Available || p.Error != "" {
			t.Errorf("%s: %+v", name, p)
		}
	}
	if s.SLOs.Available || s.Rollouts.Available || s.Traces.Available || s.Processes.Available {
		t.Errorf("panels available without their endpoints: %+v", s)
	}

	// An endpoint answering garbage or 500 is an error on its panel.
	s = newCollector(FromAdmin(adminStub(map[string]string{"/admin/status": fixtureStatus, "/admin/slos": `{"slos": [`}), ""),
		time.Now, time.Second).collect(context.Background())
	if !s.SLOs.Available || !strings.Contains(s.SLOs.Error, "decoding") {
		t.Errorf("broken slos answer: %+v", s.SLOs)
	}
}

// newBroker starts a real broker (engine and HTTP API) on loopback.
func newBroker(t *testing.T) (*engine.Broker, string) {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(b))
	t.Cleanup(func() { srv.Close(); b.Close() })
	return b, srv.URL
}

// TestBrokerQueues polls a real broker: queue depth and in-flight, its
// growth between snapshots, and a stream group's lag.
func TestBrokerQueues(t *testing.T) {
	b, url := newBroker(t)
	ctx := context.Background()
	if err := b.Declare("orders", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareStream("events", broker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := b.Publish(ctx, "orders", broker.Message{Body: []byte("x")}, broker.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Append(ctx, "events", broker.Message{Body: []byte("e")}); err != nil {
			t.Fatal(err)
		}
	}
	clk := &clock{t: time.Now()}
	c := newCollector(Sources{Brokers: func() []string { return []string{url} }}, clk.now, time.Second)
	s := c.collect(ctx)
	if !s.Brokers.Available || len(s.Brokers.Items) != 1 {
		t.Fatalf("brokers: %+v", s.Brokers)
	}
	bs := s.Brokers.Items[0]
	// orders and its dead-letter queue orders.dlq, sorted.
	if bs.Error != "" || len(bs.Queues) != 2 || bs.Queues[0].Name != "orders" || bs.Queues[0].Depth != 3 || bs.Queues[1].Name != "orders.dlq" {
		t.Fatalf("broker: %+v", bs)
	}
	if len(bs.Streams) != 1 || bs.Streams[0].Name != "events" || bs.Streams[0].LastOffset == 0 {
		t.Fatalf("streams: %+v", bs.Streams)
	}
	last := bs.Streams[0].LastOffset
	if err := b.Commit("events", "mailer", last); err != nil { // read all but the last
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, err := b.Publish(ctx, "orders", broker.Message{Body: []byte("x")}, broker.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	clk.t = clk.t.Add(2 * time.Second)
	s = c.collect(ctx)
	bs = s.Brokers.Items[0]
	if q := bs.Queues[0]; q.Depth != 7 || q.Growth != 2 {
		t.Errorf("queue after 4 more in 2s: depth %d growth %v, want 7 and 2/s", q.Depth, q.Growth)
	}
	if g := bs.Streams[0].Groups; len(g) != 1 || g[0].Name != "mailer" || g[0].Lag != 1 {
		t.Errorf("stream group lag: %+v, want mailer with lag 1", g)
	}

	// A broker that is down is an error on its entry, not on the page.
	c = newCollector(Sources{Brokers: func() []string { return []string{"http://127.0.0.1:1"} }}, time.Now, time.Second)
	s = c.collect(ctx)
	if len(s.Brokers.Items) != 1 || s.Brokers.Items[0].Error == "" {
		t.Errorf("unreachable broker: %+v", s.Brokers)
	}
}

func TestStreamLag(t *testing.T) {
	for _, c := range []struct{ first, last, next, want uint64 }{
		{0, 0, 0, 0},   // empty
		{1, 10, 0, 10}, // never read
		{1, 10, 11, 0}, // read everything
		{1, 10, 10, 1},
		{5, 10, 2, 6}, // committed before the oldest kept
		{1, 10, 99, 0},
	} {
		if got := streamLag(c.first, c.last, c.next); got != c.want {
			t.Errorf("streamLag(%d, %d, %d) = %d, want %d", c.first, c.last, c.next, got, c.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	bounds := []float64{0.1, 1, inf}
	for _, c := range []struct {
		q    float64
		cum  []float64
		want float64
	}{
		{0.5, []float64{0, 0, 0}, 0},
		{0.5, []float64{10, 10, 10}, 0.05},
		{0.99, []float64{50, 100, 100}, 0.1 + 0.9*(99-50)/50},
		{0.99, []float64{0, 0, 10}, 1}, // all above the last bound: reported at it
		{0.5, []float64{10, 10}, 0},    // mismatched lengths
	} {
		if got := quantile(c.q, bounds, c.cum); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("quantile(%v, %v) = %v, want %v", c.q, c.cum, got, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	if err := (Config{Brokers: []string{"http://127.0.0.1:7401", "https://b.example/api"}, MaxStreams: 4}).Validate(); err != nil {
		t.Errorf("good config: %v", err)
	}
	err := Config{Brokers: []string{"", "ftp://x", "http://u:p@h:1", "http://h:1/?q=1", "http://"}, MaxStreams: -1}.Validate()
	for _, want := range []string{"brokers[0]: empty", `brokers[1]: invalid URL "ftp://x"`, `brokers[2]: invalid URL "http://u:p@h:1": expected a base URL without credentials`,
		`brokers[3]`, `brokers[4]: invalid URL "http://": no host`, "max_streams: -1 out of range"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	many := make([]string, MaxBrokers+1)
	for i := range many {
		many[i] = "http://127.0.0.1:1"
	}
	if err := (Config{Brokers: many}).Validate(); err == nil || !strings.Contains(err.Error(), "expected at most 16") {
		t.Errorf("17 brokers: %v", err)
	}
}

// FuzzDecodeAnswers feeds arbitrary bodies to every source's decoder: no
// panic, and a bad trace id never reaches the page.
func FuzzDecodeAnswers(f *testing.F) {
	for _, s := range []string{fixtureStatus, fixtureSLOs, fixtureRollouts, fixtureFaults, fixtureTraces, `{}`, `null`, `[`, `{"slos":null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		h := adminStub(map[string]string{"/admin/status": body, "/admin/slos": body, "/admin/rollouts": body,
			"/admin/faults": body, "/admin/traces": body, "/admin/p": body})
		s := newCollector(FromAdmin(h, "/admin/p"), time.Now, time.Second).collect(context.Background())
		for _, tr := range s.Traces.Items {
			if !traceID.MatchString(tr.ID) {
				t.Fatalf("trace id %q passed", tr.ID)
			}
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("snapshot does not encode: %v", err)
		}
	})
}

// TestBrokerQueuesFollowsPages: a broker whose listings come in pages
// (here of 50) is read through its Link rel="next": the panel shows the
// first maxQueues names of all of them and counts the rest as omitted
// (it read only the first page before).
func TestBrokerQueuesFollowsPages(t *testing.T) {
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewWithOptions(b, httpapi.Options{ListMax: 50}))
	t.Cleanup(func() { srv.Close(); b.Close() })
	for i := 0; i < 105; i++ {
		if err := b.Declare(fmt.Sprintf("q%03d", i), broker.QueueConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := b.DeclareStream(fmt.Sprintf("s%d", i), broker.StreamConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	all := b.Queues()
	if len(all) <= maxQueues {
		t.Fatalf("%d queues: the test needs more than %d", len(all), maxQueues)
	}
	c := newCollector(Sources{Brokers: func() []string { return []string{srv.URL} }}, time.Now, time.Second)
	bs := c.collect(context.Background()).Brokers.Items[0]
	if bs.Error != "" || len(bs.Queues) != maxQueues || bs.Omitted != len(all)-maxQueues || len(bs.Streams) != 3 {
		t.Fatalf("broker: error %q, %d queues, %d streams, %d omitted; want %d queues, 3 streams, %d omitted",
			bs.Error, len(bs.Queues), len(bs.Streams), bs.Omitted, maxQueues, len(all)-maxQueues)
	}
	for i, q := range bs.Queues {
		if q.Name != all[i] {
			t.Fatalf("queue %d: %s, want %s (the first names, in order)", i, q.Name, all[i])
		}
	}
}
