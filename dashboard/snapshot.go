package dashboard

import (
	"context"
	"errors"
	"time"
)

// Snapshot is what the page receives once a second: the gateway's state
// with rates computed from the previous snapshot, and every panel's data.
// Panels whose source is missing or answers 404 are not available, which
// the page says; a failing source keeps the others working.
type Snapshot struct {
	Time       time.Time        `json:"time"`
	IntervalMS int64            `json:"interval_ms"`
	Gateway    Gateway          `json:"gateway"`
	Routes     []Route          `json:"routes"`
	Upstreams  []Upstream       `json:"upstreams"`
	Brokers    Panel[Broker]    `json:"brokers"`
	Processes  Panel[Process]   `json:"processes"`
	SLOs       Panel[SLO]       `json:"slos"`
	Rollouts   Panel[Rollout]   `json:"rollouts"`
	Faults     Panel[Fault]     `json:"faults"`
	Traces     Panel[TraceInfo] `json:"traces"`
	// Error says why the gateway's own state could not be read (the
	// topology is then empty).
	Error string `json:"error,omitempty"`
}

// Panel is one panel's items, or why there are none.
type Panel[T any] struct {
	// Available is false when the source does not exist (not configured,
	// or the endpoint answers 404): the page shows "not available".
	Available bool   `json:"available"`
	Error     string `json:"error,omitempty"` // the source failed this time
	Items     []T    `json:"items"`
}

// ErrNotAvailable is returned by a source that does not exist (yet): an
// admin endpoint answering 404, a feature not built in.
var ErrNotAvailable = errors.New("not available")

// Gateway is the gateway as a whole.
type Gateway struct {
	ConfigFile string    `json:"config_file"`
	LoadedAt   time.Time `json:"loaded_at"`
	InFlight   int64     `json:"in_flight"`
	Rates
}

// Rates are per-second rates and latency over the last interval, from the
// difference of two snapshots' counters. Absent (zero) on the first one.
type Rates struct {
	RPS       float64 `json:"rps"`        // requests per second
	ErrorRate float64 `json:"error_rate"` // share of them that failed, 0..1
	P50ms     float64 `json:"p50_ms,omitempty"`
	P99ms     float64 `json:"p99_ms,omitempty"`
}

// Status is the gateway's state as GET /admin/status shows it (the fields
// the dashboard uses). It mirrors admin.Snapshot's JSON on purpose: the
// dashboard sits below the admin package and reads its answers.
type Status struct {
	ConfigFile string     `json:"config_file"`
	LoadedAt   time.Time  `json:"loaded_at"`
	InFlight   int64      `json:"in_flight"`
	Routes     []Route    `json:"routes"`
	Upstreams  []Upstream `json:"upstreams"`
}

// Route is one route, with its rates (from the gateway's metrics).
type Route struct {
	Name        string   `json:"name"`
	Host        string   `json:"host,omitempty"`
	Path        string   `json:"path,omitempty"`
	PathPrefix  string   `json:"path_prefix,omitempty"`
	PathPattern string   `json:"path_pattern,omitempty"`
	Methods     []string `json:"methods,omitempty"`
	Upstream    string   `json:"upstream"`
	InFlight    float64  `json:"in_flight"`
	Rates
}

// Upstream is one pool and its targets.
type Upstream struct {
	Name    string   `json:"name"`
	Balance string   `json:"balance"`
	Circuit string   `json:"circuit,omitempty"` // upstream-wide breaker: closed, open, half-open
	Targets []Target `json:"targets"`
	Rates
}

// Target is one backend: admin state plus rates from its counters.
type Target struct {
	Address       string     `json:"address"`
	Weight        int        `json:"weight"`
	Healthy       bool       `json:"healthy"`
	Draining      bool       `json:"draining"`
	Ejected       bool       `json:"ejected"`
	EjectedUntil  *time.Time `json:"ejected_until,omitempty"`
	Available     bool       `json:"available"`
	Circuit       string     `json:"circuit,omitempty"`
	InFlight      int64      `json:"in_flight"`
	Requests      uint64     `json:"requests"`
	Failures      uint64     `json:"failures"`
	LatencyEWMAms float64    `json:"latency_ewma_ms"`
	// Process names the process serving at Address when a process list is
	// known (hitch up's), e.g. "rides#1".
	Process string `json:"process,omitempty"`
	Rates
}

// Broker is one broker's queues and streams.
type Broker struct {
	URL     string   `json:"url"`
	Error   string   `json:"error,omitempty"`
	Queues  []Queue  `json:"queues"`
	Streams []Stream `json:"streams"`
	// Omitted counts queues and streams beyond the dashboard's bound
	// (maxQueues each), not shown.
	Omitted int `json:"omitted,omitempty"`
}

// Queue is a broker queue (broker.QueueInfo's counts).
type Queue struct {
	Name         string `json:"name"`
	Depth        int    `json:"depth"`         // ready + waiting: not yet taken by a consumer
	InFlight     int    `json:"in_flight"`     // delivered, not acked
	Delayed      int    `json:"delayed"`       // not yet available
	DeadLettered int    `json:"dead_lettered"` // in its dead-letter queue
	// Growth is the change of Depth per second since the last snapshot:
	// positive while producers outpace consumers.
	Growth float64 `json:"growth"`
}

// Stream is a broker stream and its consumer groups' lag.
type Stream struct {
	Name       string  `json:"name"`
	LastOffset uint64  `json:"last_offset"`
	Groups     []Group `json:"groups"`
}

// Group is a stream's consumer group.
type Group struct {
	Name      string `json:"name"`
	Committed uint64 `json:"committed"` // the next offset it reads
	Lag       uint64 `json:"lag"`       // messages appended it has not read
}

// Process is one process of the system (hitch up's list).
type Process struct {
	Name     string    `json:"name"`
	Replica  int       `json:"replica"`
	PID      int       `json:"pid"`
	Address  string    `json:"address,omitempty"`
	Health   string    `json:"health"`
	Restarts int       `json:"restarts"`
	Started  time.Time `json:"started"`
	Role     string    `json:"role"`
}

// SLO is one objective as GET /admin/slos shows it (the shared contract).
type SLO struct {
	Name            string     `json:"name"`
	Kind            string     `json:"kind"`
	Route           string     `json:"route"`
	Upstream        string     `json:"upstream"`
	Objective       float64    `json:"objective"`
	Window          string     `json:"window"`
	Threshold       string     `json:"threshold"`
	Good            float64    `json:"good"`
	Total           float64    `json:"total"`
	SLI             float64    `json:"sli"`
	BudgetRemaining float64    `json:"budget_remaining"`
	Alerts          []SLOAlert `json:"alerts"`
}

// SLOAlert is one burn-rate alert of an SLO.
type SLOAlert struct {
	Name        string  `json:"name"`
	Severity    string  `json:"severity"`
	BurnRate    float64 `json:"burn_rate"`
	LongWindow  string  `json:"long_window"`
	ShortWindow string  `json:"short_window"`
	LongBurn    float64 `json:"long_burn"`
	ShortBurn   float64 `json:"short_burn"`
	Firing      bool    `json:"firing"`
	Since       string  `json:"since,omitempty"`
}

// Rollout is one deployment as GET /admin/rollouts shows it.
type Rollout struct {
	Upstream     string    `json:"upstream"`
	Strategy     string    `json:"strategy"`
	State        string    `json:"state"`
	Step         int       `json:"step"`
	Steps        int       `json:"steps"`
	CanaryWeight float64   `json:"canary_weight"`
	Stable       []string  `json:"stable"`
	Canary       []string  `json:"canary"`
	Analysis     *Analysis `json:"analysis,omitempty"`
	Started      string    `json:"started,omitempty"`
	Updated      string    `json:"updated,omitempty"`
	Message      string    `json:"message,omitempty"`
}

// Analysis compares a rollout's canary with its stable version.
type Analysis struct {
	Stable  Version `json:"stable"`
	Canary  Version `json:"canary"`
	Verdict string  `json:"verdict"`
	Reason  string  `json:"reason"`
}

// Version is one side of a rollout analysis.
type Version struct {
	Requests  float64 `json:"requests"`
	ErrorRate float64 `json:"error_rate"`
	P99ms     float64 `json:"p99_ms"`
}

// Fault is one route's fault injection as GET /admin/faults shows it.
type Fault struct {
	Route          string  `json:"route"`
	Active         bool    `json:"active"`
	Delay          string  `json:"delay,omitempty"`
	DelayPercent   float64 `json:"delay_percent"`
	AbortStatus    int     `json:"abort_status,omitempty"`
	AbortPercent   float64 `json:"abort_percent"`
	Header         string  `json:"header,omitempty"`
	InjectedDelays uint64  `json:"injected_delays"`
	InjectedAborts uint64  `json:"injected_aborts"`
}

// TraceInfo is a recent slow or failed trace (GET /admin/traces?kind=kept).
type TraceInfo struct {
	ID         string    `json:"trace_id"`
	Root       string    `json:"root"`
	Service    string    `json:"service"`
	Start      time.Time `json:"start"`
	DurationNS int64     `json:"duration_ns"`
	Error      bool      `json:"error"`
	Slow       bool      `json:"slow"`
}

// panel runs a source into a panel: a nil source or ErrNotAvailable is
// "not available", another error is shown.
func panel[T any](ctx context.Context, src func(context.Context) ([]T, error)) Panel[T] {
	if src == nil {
		return Panel[T]{Items: []T{}}
	}
	items, err := src(ctx)
	switch {
	case errors.Is(err, ErrNotAvailable):
		return Panel[T]{Items: []T{}}
	case err != nil:
		return Panel[T]{Available: true, Error: err.Error(), Items: []T{}}
	}
	if items == nil {
		items = []T{}
	}
	return Panel[T]{Available: true, Items: items}
}
