package dashboard

import (
	"context"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// collector builds snapshots and keeps the previous one's counters, for
// rates. Not safe for concurrent use: one goroutine (the hub's) owns it.
type collector struct {
	src      Sources
	client   *http.Client
	now      func() time.Time
	interval time.Duration

	prevT       time.Time
	prevTargets map[[2]string]targetCounts
	prevRoutes  map[string]routeCounts
	prevQueues  map[[2]string]int
}

type targetCounts struct{ requests, failures uint64 }

// routeCounts are a route's cumulative counters from the metrics.
type routeCounts struct {
	requests, errors float64
	inFlight         float64
	bounds           []float64 // histogram bucket upper bounds, ascending
	buckets          []float64 // cumulative counts per bound
}

func newCollector(src Sources, now func() time.Time, interval time.Duration) *collector {
	c := src.Client
	if c == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		c = &http.Client{Transport: t, Timeout: 2 * time.Second}
	}
	return &collector{src: src, client: c, now: now, interval: interval}
}

// reset forgets the previous counters (rates start over).
func (c *collector) reset() {
	c.prevT = time.Time{}
	c.prevTargets, c.prevRoutes, c.prevQueues = nil, nil, nil
}

// collect builds one snapshot. Sources are called with ctx; brokers are
// polled concurrently with the rest.
func (c *collector) collect(ctx context.Context) Snapshot {
	now := c.now()
	snap := Snapshot{Time: now, IntervalMS: c.interval.Milliseconds(), Routes: []Route{}, Upstreams: []Upstream{}}
	var (
		brokers []Broker
		wg      sync.WaitGroup
	)
	var urls []string
	if c.src.Brokers != nil {
		urls = c.src.Brokers()
	}
	if len(urls) > 0 {
		brokers = make([]Broker, len(urls))
		for i, u := range urls {
			wg.Add(1)
			go func() { defer wg.Done(); brokers[i] = pollBroker(ctx, c.client, u) }()
		}
	}
	dt := 0.0
	if !c.prevT.IsZero() {
		dt = now.Sub(c.prevT).Seconds()
	}

	if c.src.Status != nil {
		st, err := c.src.Status(ctx)
		if err != nil {
			snap.Error = err.Error()
		} else {
			snap.Gateway = Gateway{ConfigFile: st.ConfigFile, LoadedAt: st.LoadedAt, InFlight: st.InFlight}
			if st.Routes != nil {
				snap.Routes = st.Routes
			}
			if st.Upstreams != nil {
				snap.Upstreams = st.Upstreams
			}
		}
	}
	snap.Processes = panel(ctx, c.src.Processes)
	snap.SLOs = panel(ctx, c.src.SLOs)
	snap.Rollouts = panel(ctx, c.src.Rollouts)
	snap.Faults = panel(ctx, c.src.Faults)
	snap.Traces = panel(ctx, c.src.Traces)

	c.targetRates(&snap, dt)
	c.routeRates(&snap, dt)
	c.annotateProcesses(&snap)
	roundRates(&snap)

	wg.Wait()
	if c.src.Brokers != nil {
		snap.Brokers = Panel[Broker]{Available: len(urls) > 0, Items: []Broker{}}
		c.queueRates(brokers, dt)
		snap.Brokers.Items = append(snap.Brokers.Items, brokers...)
	} else {
		snap.Brokers = Panel[Broker]{Items: []Broker{}}
	}
	c.prevT = now
	return snap
}

// roundRates keeps three decimals of every rate: the page shows fewer,
// and the snapshot stays small.
func roundRates(s *Snapshot) {
	r3 := func(v float64) float64 { return math.Round(v*1000) / 1000 }
	round := func(r *Rates) {
		r.RPS, r.ErrorRate, r.P50ms, r.P99ms = r3(r.RPS), r3(r.ErrorRate), r3(r.P50ms), r3(r.P99ms)
	}
	round(&s.Gateway.Rates)
	for i := range s.Routes {
		round(&s.Routes[i].Rates)
	}
	for i := range s.Upstreams {
		round(&s.Upstreams[i].Rates)
		for j := range s.Upstreams[i].Targets {
			round(&s.Upstreams[i].Targets[j].Rates)
		}
	}
}

// rate is d/dt, 0 without an interval or across a counter reset.
func rate(cur, prev, dt float64) float64 {
	if dt <= 0 || cur < prev {
		return 0
	}
	return (cur - prev) / dt
}

// targetRates fills each target's and upstream's rates from the change of
// its request and failure counters.
func (c *collector) targetRates(snap *Snapshot, dt float64) {
	next := make(map[[2]string]targetCounts)
	for ui := range snap.Upstreams {
		u := &snap.Upstreams[ui]
		if u.Targets == nil {
			u.Targets = []Target{}
		}
		var reqs, fails float64
		u.Rates = Rates{}
		for ti := range u.Targets {
			t := &u.Targets[ti]
			t.Rates = Rates{}
			key := [2]string{u.Name, t.Address}
			next[key] = targetCounts{t.Requests, t.Failures}
			p, ok := c.prevTargets[key]
			if !ok || t.Requests < p.requests || t.Failures < p.failures {
				continue
			}
			dr, df := float64(t.Requests-p.requests), float64(t.Failures-p.failures)
			t.RPS = rate(dr, 0, dt)
			if dr > 0 {
				t.ErrorRate = math.Min(df/dr, 1)
			}
			reqs += dr
			fails += df
		}
		u.RPS = rate(reqs, 0, dt)
		if reqs > 0 {
			u.ErrorRate = math.Min(fails/reqs, 1)
		}
	}
	c.prevTargets = next
}

// routeRates fills each route's rates and latency percentiles from the
// change of the gateway's request counter and duration histogram, and the
// gateway's totals from their sum.
func (c *collector) routeRates(snap *Snapshot, dt float64) {
	if c.src.Metrics == nil {
		return
	}
	fams, err := c.src.Metrics()
	if err != nil {
		if snap.Error == "" {
			snap.Error = "gathering metrics: " + err.Error()
		}
		return
	}
	cur := routeCountsFrom(fams, c.src.MetricLabels)
	var reqs, errs float64
	var total routeCounts
	for i := range snap.Routes {
		r := &snap.Routes[i]
		r.Rates, r.InFlight = Rates{}, 0
		rc, ok := cur[r.Name]
		if !ok || c.prevRoutes == nil {
			continue
		}
		r.InFlight = rc.inFlight
		// A route without series last time had answered nothing yet.
		p := c.prevRoutes[r.Name]
		if rc.requests < p.requests {
			continue
		}
		dr, de := rc.requests-p.requests, rc.errors-p.errors
		r.RPS = rate(dr, 0, dt)
		if dr > 0 {
			r.ErrorRate = math.Min(de/dr, 1)
		}
		delta := subBuckets(rc, p)
		r.P50ms = quantile(0.5, rc.bounds, delta) * 1000
		r.P99ms = quantile(0.99, rc.bounds, delta) * 1000
		reqs += dr
		errs += de
		total = addBuckets(total, rc.bounds, delta)
	}
	snap.Gateway.RPS = rate(reqs, 0, dt)
	if reqs > 0 {
		snap.Gateway.ErrorRate = math.Min(errs/reqs, 1)
	}
	snap.Gateway.P50ms = quantile(0.5, total.bounds, total.buckets) * 1000
	snap.Gateway.P99ms = quantile(0.99, total.bounds, total.buckets) * 1000
	c.prevRoutes = cur
}

// routeCountsFrom sums the gateway's per-route series over their other
// labels: switchyard_requests_total (5xx counted as errors),
// switchyard_request_duration_seconds and
// switchyard_route_inflight_requests.
func routeCountsFrom(fams []*dto.MetricFamily, want map[string]string) map[string]routeCounts {
	out := map[string]routeCounts{}
	match := func(m *dto.Metric) (string, string, bool) {
		var route, code string
		n := 0
		for _, lp := range m.GetLabel() {
			switch lp.GetName() {
			case "route":
				route = lp.GetValue()
			case "code":
				code = lp.GetValue()
			}
			if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
				n++
			}
		}
		return route, code, n == len(want) && route != ""
	}
	for _, f := range fams {
		switch f.GetName() {
		case "switchyard_requests_total":
			for _, m := range f.GetMetric() {
				route, code, ok := match(m)
				if !ok {
					continue
				}
				rc := out[route]
				v := m.GetCounter().GetValue()
				rc.requests += v
				if n, err := strconv.Atoi(code); err == nil && n >= 500 {
					rc.errors += v
				}
				out[route] = rc
			}
		case "switchyard_route_inflight_requests":
			for _, m := range f.GetMetric() {
				if route, _, ok := match(m); ok {
					rc := out[route]
					rc.inFlight += m.GetGauge().GetValue()
					out[route] = rc
				}
			}
		case "switchyard_request_duration_seconds":
			for _, m := range f.GetMetric() {
				route, _, ok := match(m)
				if !ok {
					continue
				}
				h := m.GetHistogram()
				bounds := make([]float64, 0, len(h.GetBucket()))
				counts := make([]float64, 0, len(h.GetBucket()))
				for _, b := range h.GetBucket() {
					bounds = append(bounds, b.GetUpperBound())
					counts = append(counts, float64(b.GetCumulativeCount()))
				}
				out[route] = addBuckets(out[route], bounds, counts)
			}
		}
	}
	return out
}

// addBuckets adds counts (over bounds) to rc's histogram; histograms with
// other bounds than rc's are not added.
func addBuckets(rc routeCounts, bounds, counts []float64) routeCounts {
	if rc.bounds == nil {
		rc.bounds = bounds
		rc.buckets = append([]float64(nil), counts...)
		return rc
	}
	if len(bounds) != len(rc.bounds) {
		return rc
	}
	for i := range counts {
		rc.buckets[i] += counts[i]
	}
	return rc
}

// subBuckets is cur's histogram minus prev's (nil when their bounds
// differ); a prev without a histogram counts as empty.
func subBuckets(cur, prev routeCounts) []float64 {
	if prev.buckets == nil {
		return cur.buckets
	}
	if len(cur.buckets) != len(prev.buckets) {
		return nil
	}
	out := make([]float64, len(cur.buckets))
	for i := range cur.buckets {
		out[i] = math.Max(cur.buckets[i]-prev.buckets[i], 0)
	}
	return out
}

// quantile estimates the q-quantile of a cumulative histogram by linear
// interpolation inside the bucket it falls in, as PromQL's
// histogram_quantile does; 0 for an empty histogram. Observations above
// the last finite bound are reported at that bound.
func quantile(q float64, bounds, cum []float64) float64 {
	if len(cum) == 0 || len(bounds) != len(cum) {
		return 0
	}
	total := cum[len(cum)-1]
	if total <= 0 {
		return 0
	}
	rank := q * total
	i := sort.Search(len(cum), func(i int) bool { return cum[i] >= rank })
	if i >= len(cum) {
		i = len(cum) - 1
	}
	if math.IsInf(bounds[i], 1) {
		if i == 0 {
			return 0
		}
		return bounds[i-1]
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = bounds[i-1], cum[i-1]
	}
	in := cum[i] - below
	if in <= 0 {
		return bounds[i]
	}
	return lo + (bounds[i]-lo)*(rank-below)/in
}

// queueRates fills each queue's growth from its previous depth.
func (c *collector) queueRates(brokers []Broker, dt float64) {
	next := map[[2]string]int{}
	for bi := range brokers {
		for qi := range brokers[bi].Queues {
			q := &brokers[bi].Queues[qi]
			key := [2]string{brokers[bi].URL, q.Name}
			next[key] = q.Depth
			if p, ok := c.prevQueues[key]; ok && dt > 0 {
				q.Growth = float64(q.Depth-p) / dt
			}
		}
	}
	c.prevQueues = next
}

// annotateProcesses names each target by the process serving at its
// address, when the process list is known.
func (c *collector) annotateProcesses(snap *Snapshot) {
	if len(snap.Processes.Items) == 0 {
		return
	}
	byAddr := map[string]string{}
	for _, p := range snap.Processes.Items {
		if p.Address != "" {
			byAddr[p.Address] = p.Name + "#" + strconv.Itoa(p.Replica)
		}
	}
	for ui := range snap.Upstreams {
		for ti := range snap.Upstreams[ui].Targets {
			t := &snap.Upstreams[ui].Targets[ti]
			t.Process = byAddr[t.Address]
		}
	}
}
