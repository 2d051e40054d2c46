package proxy

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/retry"
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

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_requests_total", Help: "Requests answered, by route, upstream and status code.",
		}, []string{"route", "upstream", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchyard_request_duration_seconds", Help: "Time to answer a request (all attempts), by route.",
			Buckets: buckets,
		}, []string{"route", "upstream"}),
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

func (m *Metrics) request(routeName, upstreamName string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(routeName, upstreamName, codeLabel(status)).Inc()
	m.duration.WithLabelValues(routeName, upstreamName).Observe(d.Seconds())
}

func (m *Metrics) routeInflight(routeName string, delta float64) {
	if m == nil {
		return
	}
	m.inflight.WithLabelValues(routeName).Add(delta)
}

func (m *Metrics) attempt(upstreamName, target string, resp *http.Response, err error, d time.Duration) {
	if m == nil {
		return
	}
	code := 0
	if err == nil {
		code = resp.StatusCode
		m.attemptDuration.WithLabelValues(upstreamName, target).Observe(d.Seconds())
	}
	m.attempts.WithLabelValues(upstreamName, target, codeLabel(code)).Inc()
	switch {
	case err != nil:
		m.attemptErrors.WithLabelValues(upstreamName, target, errorKindLabel(classify(err))).Inc()
	case code >= 500:
		m.attemptErrors.WithLabelValues(upstreamName, target, "5xx").Inc()
	}
}

func errorKindLabel(k retry.ErrorKind) string {
	switch k {
	case retry.ConnectFailure:
		return "connect_failure"
	case retry.Timeout:
		return "timeout"
	case retry.Reset:
		return "reset"
	}
	return "other"
}

func (m *Metrics) retry(upstreamName string) {
	if m != nil {
		m.retries.WithLabelValues(upstreamName).Inc()
	}
}

func (m *Metrics) budgetRefused(upstreamName string) {
	if m != nil {
		m.budgetExhausted.WithLabelValues(upstreamName).Inc()
	}
}

func (m *Metrics) ejection(upstreamName, target string) {
	if m != nil {
		m.ejections.WithLabelValues(upstreamName, target).Inc()
	}
}

// BreakerTransition records a circuit state change; target is "" for the
// upstream-wide breaker.
func (m *Metrics) BreakerTransition(upstreamName, target, from, to string) {
	if m != nil {
		m.transitions.WithLabelValues(upstreamName, target, from, to).Inc()
	}
}
