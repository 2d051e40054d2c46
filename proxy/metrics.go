package proxy

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/retry"
	"github.com/switchyard/switchyard/upstream"
)

// Metrics are the proxy's Prometheus collectors. Create one per gateway
// with NewMetrics and a registry of its own (no global registry). All
// methods are safe on a nil *Metrics, which records nothing.
type Metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	inflight        *prometheus.GaugeVec
	attempts        *prometheus.CounterVec
	attemptDuration *prometheus.HistogramVec
	attemptErrors   *prometheus.CounterVec
	retries         *prometheus.CounterVec
	budgetExhausted *prometheus.CounterVec
	ejections       *prometheus.CounterVec
	transitions     *prometheus.CounterVec
}

// The request metrics' names and labels, for what derives queries from
// them (switchyard slo rules writes Prometheus rules over these).
const (
	// RequestsMetric counts requests answered, labelled route, upstream, code.
	RequestsMetric = "switchyard_requests_total"
	// DurationMetric is the histogram of request durations in seconds,
	// labelled route and upstream, with DurationBuckets.
	DurationMetric = "switchyard_request_duration_seconds"
	RouteLabel     = "route"
	UpstreamLabel  = "upstream"
	CodeLabel      = "code"
)

// DurationBuckets returns the upper bounds (seconds) of DurationMetric's
// and the attempt duration histogram's buckets.
func DurationBuckets() []float64 {
	return []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	buckets := DurationBuckets()
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: RequestsMetric, Help: "Requests answered, by route, upstream and status code.",
		}, []string{RouteLabel, UpstreamLabel, CodeLabel}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: DurationMetric, Help: "Time to answer a request (all attempts), by route.",
			Buckets: buckets,
		}, []string{RouteLabel, UpstreamLabel}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_route_inflight_requests", Help: "Requests in flight, by route.",
		}, []string{"route"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_upstream_attempts_total", Help: "Attempts sent to targets, by status code (0 = transport error).",
		}, []string{"upstream", "target", "code"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchyard_upstream_attempt_duration_seconds", Help: "Time to response headers per attempt, by target.",
			Buckets: buckets,
		}, []string{"upstream", "target"}),
		attemptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_upstream_errors_total", Help: "Failed attempts by kind: connect_failure, timeout, reset, other, 5xx.",
		}, []string{"upstream", "target", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_retries_total", Help: "Retries sent, by upstream.",
		}, []string{"upstream"}),
		budgetExhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_retry_budget_exhausted_total", Help: "Retries refused by the retry budget, by upstream.",
		}, []string{"upstream"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_outlier_ejections_total", Help: "Passive outlier ejections, by target.",
		}, []string{"upstream", "target"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_circuit_transitions_total", Help: "Circuit breaker state changes (target \"\" is the upstream-wide breaker).",
		}, []string{"upstream", "target", "from", "to"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight, m.attempts, m.attemptDuration,
		m.attemptErrors, m.retries, m.budgetExhausted, m.ejections, m.transitions} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// codes holds the decimal strings of status codes, so labelling a request
// does not format an integer.
var codes = func() (c [600]string) {
	for i := range c {
		c[i] = strconv.Itoa(i)
	}
	return c
}()

func codeLabel(code int) string {
	if code >= 0 && code < len(codes) {
		return codes[code]
	}
	return strconv.Itoa(code)
}

// codeCounters counts by status code with the counter of each code looked
// up once, on its first use, instead of by label values per request.
type codeCounters struct {
	vec    *prometheus.CounterVec
	labels []string // label values before the code
	byCode [600]atomic.Pointer[prometheus.Counter]
}

func (cc *codeCounters) inc(code int) {
	if code < 0 || code >= len(cc.byCode) {
		cc.vec.WithLabelValues(append(cc.labels[:len(cc.labels):len(cc.labels)], codeLabel(code))...).Inc()
		return
	}
	if c := cc.byCode[code].Load(); c != nil {
		(*c).Inc()
		return
	}
	c := cc.vec.WithLabelValues(append(cc.labels[:len(cc.labels):len(cc.labels)], codes[code])...)
	cc.byCode[code].Store(&c)
	c.Inc()
}

// routeObs holds a route's observers for one of its pools, resolved when
// the route is prepared. Methods are safe on nil.
type routeObs struct {
	requests codeCounters
	duration prometheus.Observer
	inflight prometheus.Gauge
}

func (m *Metrics) forRoute(routeName, upstreamName string) *routeObs {
	if m == nil {
		return nil
	}
	return &routeObs{
		requests: codeCounters{vec: m.requests, labels: []string{routeName, upstreamName}},
		duration: m.duration.WithLabelValues(routeName, upstreamName),
		inflight: m.inflight.WithLabelValues(routeName),
	}
}

func (o *routeObs) request(status int, d time.Duration) {
	if o != nil {
		o.requests.inc(status)
		o.duration.Observe(d.Seconds())
	}
}

func (o *routeObs) routeInflight(delta float64) {
	if o != nil {
		o.inflight.Add(delta)
	}
}

// request records a request answered without a route.
func (m *Metrics) request(routeName, upstreamName string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(routeName, upstreamName, codeLabel(status)).Inc()
	m.duration.WithLabelValues(routeName, upstreamName).Observe(d.Seconds())
}

// poolObs holds a pool's observers, resolved when the pool is built.
// Methods are safe on nil.
type poolObs struct {
	retries, budgetExhausted prometheus.Counter
	targets                  []*targetObs // by Target.Index
}

type targetObs struct {
	attempts  codeCounters
	duration  prometheus.Observer
	errors    [5]prometheus.Counter // by errorKind index, then 5xx
	ejections prometheus.Counter
}

var errorKinds = [5]string{"connect_failure", "timeout", "reset", "other", "5xx"}

func (m *Metrics) forPool(upstreamName string, targets []*upstream.Target) *poolObs {
	if m == nil {
		return nil
	}
	o := &poolObs{
		retries:         m.retries.WithLabelValues(upstreamName),
		budgetExhausted: m.budgetExhausted.WithLabelValues(upstreamName),
		targets:         make([]*targetObs, len(targets)),
	}
	for i, t := range targets {
		to := &targetObs{
			attempts:  codeCounters{vec: m.attempts, labels: []string{upstreamName, t.Address}},
			duration:  m.attemptDuration.WithLabelValues(upstreamName, t.Address),
			ejections: m.ejections.WithLabelValues(upstreamName, t.Address),
		}
		for k, kind := range errorKinds {
			to.errors[k] = m.attemptErrors.WithLabelValues(upstreamName, t.Address, kind)
		}
		o.targets[i] = to
	}
	return o
}

func (o *poolObs) target(t *upstream.Target) *targetObs {
	if o == nil || t.Index < 0 || t.Index >= len(o.targets) {
		return nil
	}
	return o.targets[t.Index]
}

func (o *targetObs) attempt(resp *http.Response, err error, d time.Duration) {
	if o == nil {
		return
	}
	code := 0
	if err == nil {
		code = resp.StatusCode
		o.duration.Observe(d.Seconds())
	}
	o.attempts.inc(code)
	switch {
	case err != nil:
		o.errors[errorKindIndex(classify(err))].Inc()
	case code >= 500:
		o.errors[4].Inc()
	}
}

func (o *targetObs) ejection() {
	if o != nil {
		o.ejections.Inc()
	}
}

func (o *poolObs) retry() {
	if o != nil {
		o.retries.Inc()
	}
}

func (o *poolObs) budgetRefused() {
	if o != nil {
		o.budgetExhausted.Inc()
	}
}

func errorKindIndex(k retry.ErrorKind) int {
	switch k {
	case retry.ConnectFailure:
		return 0
	case retry.Timeout:
		return 1
	case retry.Reset:
		return 2
	}
	return 3
}

// BreakerTransition records a circuit state change; target is "" for the
// upstream-wide breaker.
func (m *Metrics) BreakerTransition(upstreamName, target, from, to string) {
	if m != nil {
		m.transitions.WithLabelValues(upstreamName, target, from, to).Inc()
	}
}
