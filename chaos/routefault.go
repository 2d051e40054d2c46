package chaos

// Fault injection per route, in the manner of Envoy's HTTP fault filter:
// a route's requests are delayed and/or aborted with a status, for a
// share of them or only for those carrying a header the route's config
// names. The faults come from the route's `fault:` block and can be set,
// switched off and cleared at runtime through the admin API (routeapi.go)
// without a reload; runtime faults are kept in STATE_DIR/faults.json.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/httpx"
)

// Bounds of a route fault.
const (
	// MaxRouteDelay bounds Delay and MaxDelay.
	MaxRouteDelay = time.Hour
	// DefaultMaxHeaderDelay is MaxDelay's default: the longest delay a
	// request's fault header may ask for.
	DefaultMaxHeaderDelay = 10 * time.Second
	// maxHeaderValue bounds the fault header's value that is parsed.
	maxHeaderValue = 256
)

// RouteFault is a route's `fault:` block, and the body of PUT
// /admin/faults/{route} (with durations as strings there).
//
//	fault:
//	  delay: 200ms          # added before the request goes on
//	  delay_percent: 10     # of the requests (default 100)
//	  abort_status: 503     # answered instead of forwarding
//	  abort_percent: 5      # of the requests (default 100)
//	  header: x-switchyard-fault   # only requests carrying it
type RouteFault struct {
	// Delay is added before a request goes on to the upstream, waited
	// without holding anything; a client that goes away during it ends
	// the request (status 499). 0 to 1h; 0 (default) adds none unless the
	// header asks for it.
	Delay time.Duration `yaml:"delay"`
	// DelayPercent is the share of requests delayed, 0 to 100. Default
	// 100 (every request, or every one carrying the header).
	DelayPercent *float64 `yaml:"delay_percent"`
	// AbortStatus is the status (200 to 599) the gateway answers itself,
	// with a JSON error body of code "fault_abort", instead of forwarding;
	// 0 (default) aborts none unless the header asks for it.
	AbortStatus int `yaml:"abort_status"`
	// AbortPercent is the share of requests aborted, 0 to 100. Default
	// 100. A request is delayed first, then perhaps aborted.
	AbortPercent *float64 `yaml:"abort_percent"`
	// Header, when set, limits the fault to requests carrying this header
	// (any value). Its value may choose the fault as Envoy's
	// x-envoy-fault-* headers do: "delay=300ms, abort=503,
	// delay_percent=50, abort_percent=10" (each part optional; a bare
	// number of milliseconds is read as a delay); percentages from the
	// header cannot exceed the configured ones and delays are capped at
	// MaxDelay. A value that does not parse chooses nothing (the
	// configured fault applies). Without a configured header, no request
	// header has any effect: clients cannot trigger faults.
	Header string `yaml:"header"`
	// MaxDelay caps the delay a request's header may ask for. Default
	// 10s; up to 1h.
	MaxDelay time.Duration `yaml:"max_delay"`
}

// Validate reports every problem with f, each naming its key.
func (f RouteFault) Validate() error {
	var errs []error
	dur := func(key string, d time.Duration) {
		if d < 0 || d > MaxRouteDelay {
			errs = append(errs, config.Fieldf(key, "%s out of range: expected 0 to %s", d, MaxRouteDelay))
		}
	}
	dur("delay", f.Delay)
	dur("max_delay", f.MaxDelay)
	pct := func(key string, p *float64) {
		if p != nil && !(*p >= 0 && *p <= 100) {
			errs = append(errs, config.Fieldf(key, "%v out of range: expected a percentage from 0 to 100", *p))
		}
	}
	pct("delay_percent", f.DelayPercent)
	pct("abort_percent", f.AbortPercent)
	if f.AbortStatus != 0 && (f.AbortStatus < 200 || f.AbortStatus > 599) {
		errs = append(errs, config.Fieldf("abort_status", "%d out of range: expected an HTTP status from 200 to 599", f.AbortStatus))
	}
	if f.Header != "" && (len(f.Header) > 64 || !httpguts.ValidHeaderFieldName(f.Header)) {
		errs = append(errs, config.Fieldf("header", "invalid header name %q: expected a header field name of at most 64 characters, e.g. x-switchyard-fault", f.Header))
	}
	if f.Delay == 0 && f.AbortStatus == 0 && f.Header == "" {
		errs = append(errs, errors.New("no fault: expected delay, abort_status or header (whose value then chooses the fault)"))
	}
	return errors.Join(errs...)
}

// compiled is a fault ready for the request path.
type compiled struct {
	delay    time.Duration
	delayPct float64
	abort    int
	abortPct float64
	header   string // canonical form; "" = every request
	maxDelay time.Duration
}

func compile(f RouteFault) *compiled {
	c := &compiled{delay: f.Delay, delayPct: 100, abort: f.AbortStatus, abortPct: 100, maxDelay: f.MaxDelay}
	if f.DelayPercent != nil {
		c.delayPct = *f.DelayPercent
	}
	if f.AbortPercent != nil {
		c.abortPct = *f.AbortPercent
	}
	if c.maxDelay == 0 {
		c.maxDelay = DefaultMaxHeaderDelay
	}
	if f.Header != "" {
		c.header = http.CanonicalHeaderKey(f.Header)
	}
	return c
}

// HeaderChoice is what a fault header's value asks for; the Has fields say
// which parts it named.
type HeaderChoice struct {
	Delay                  time.Duration
	AbortStatus            int
	DelayPercent           float64
	AbortPercent           float64
	HasDelay, HasAbort     bool
	HasDelayPct, HasAbtPct bool
}

// ParseFaultHeader reads a fault header's value: parts separated by ','
// or ';', each "delay=DURATION" (a Go duration, or a bare number of
// milliseconds as Envoy's x-envoy-fault-delay-request), "abort=STATUS"
// (200 to 599), "delay_percent=P" or "abort_percent=P" (0 to 100). A value
// without '=' (such as "1" or "on") asks for nothing in particular. It
// reports false, and asks for nothing, when any part does not parse or the
// value is longer than 256 bytes. It does not allocate.
func ParseFaultHeader(v string) (HeaderChoice, bool) {
	var hc HeaderChoice
	if len(v) > maxHeaderValue {
		return HeaderChoice{}, false
	}
	if !strings.Contains(v, "=") {
		return hc, true
	}
	for v != "" {
		var part string
		if i := strings.IndexAny(v, ",;"); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, ""
		}
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return HeaderChoice{}, false
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch strings.ToLower(key) {
		case "delay":
			d, ok := parseHeaderDelay(val)
			if !ok {
				return HeaderChoice{}, false
			}
			hc.Delay, hc.HasDelay = d, true
		case "abort":
			n, err := strconv.Atoi(val)
			if err != nil || n < 200 || n > 599 {
				return HeaderChoice{}, false
			}
			hc.AbortStatus, hc.HasAbort = n, true
		case "delay_percent", "abort_percent":
			p, err := strconv.ParseFloat(val, 64)
			if err != nil || !(p >= 0 && p <= 100) {
				return HeaderChoice{}, false
			}
			if key[0] == 'd' || key[0] == 'D' {
				hc.DelayPercent, hc.HasDelayPct = p, true
			} else {
				hc.AbortPercent, hc.HasAbtPct = p, true
			}
		default:
			return HeaderChoice{}, false
		}
	}
	return hc, true
}

// parseHeaderDelay reads a bare number of milliseconds or a Go duration,
// 0 to MaxRouteDelay.
func parseHeaderDelay(s string) (time.Duration, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > int64(MaxRouteDelay/time.Millisecond) {
			return 0, false
		}
		return time.Duration(n) * time.Millisecond, true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > MaxRouteDelay {
		return 0, false
	}
	return d, true
}

// routeSlot is one route's fault state: the effective fault read by the
// request path, its counters, and (guarded by RouteFaults.mu) where the
// fault comes from.
type routeSlot struct {
	name      string
	cur       atomic.Pointer[compiled] // nil: no fault (the request path's only load)
	delays    atomic.Int64
	aborts    atomic.Int64
	cancelled atomic.Int64

	// Guarded by RouteFaults.mu.
	config   *RouteFault // the route's fault block, nil without
	override *runtimeFault
	known    bool // the route is in the current config
}

// runtimeFault is a fault set through the admin API: it replaces the
// config's while set; inactive, it switches the route's faults off.
type runtimeFault struct {
	Fault  RouteFault
	Active bool
}

// effectiveLocked is the fault in force for s. Call with RouteFaults.mu held.
func (s *routeSlot) effectiveLocked() (RouteFault, bool) {
	switch {
	case !s.known:
		return RouteFault{}, false
	case s.override != nil:
		return s.override.Fault, s.override.Active
	case s.config != nil:
		return *s.config, true
	}
	return RouteFault{}, false
}

// applyLocked publishes s's effective fault to the request path. Call
// with RouteFaults.mu held.
func (s *routeSlot) applyLocked() {
	if f, ok := s.effectiveLocked(); ok {
		s.cur.Store(compile(f))
	} else {
		s.cur.Store(nil)
	}
}

// Middleware returns the fault injection of route: a route without a
// fault in force costs one atomic load and no allocation. Faults set at
// runtime apply to the middleware at once. Build one per route, every
// route (a route without a configured fault can get one at runtime).
func (rf *RouteFaults) Middleware(route string) httpx.Middleware {
	s := rf.slot(route)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := s.cur.Load()
			if c == nil {
				next.ServeHTTP(w, r)
				return
			}
			rf.inject(s, c, next, w, r)
		})
	}
}

// inject applies fault c to one request.
func (rf *RouteFaults) inject(s *routeSlot, c *compiled, next http.Handler, w http.ResponseWriter, r *http.Request) {
	delay, delayPct, abort, abortPct := c.delay, c.delayPct, c.abort, c.abortPct
	if c.header != "" {
		vals := r.Header[c.header]
		if len(vals) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if hc, ok := ParseFaultHeader(vals[0]); ok {
			if hc.HasDelay {
				delay = min(hc.Delay, c.maxDelay)
			}
			if hc.HasAbort {
				abort = hc.AbortStatus
			}
			if hc.HasDelayPct {
				delayPct = min(hc.DelayPercent, delayPct)
			}
			if hc.HasAbtPct {
				abortPct = min(hc.AbortPercent, abortPct)
			}
		}
	}
	if delay > 0 && rf.hit(delayPct) {
		s.delays.Add(1)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.cancelled.Add(1)
			httpx.RecordStatus(r, 499) // the client went away: nothing to answer
			return
		}
	}
	if abort != 0 && rf.hit(abortPct) {
		s.aborts.Add(1)
		httpx.WriteError(w, r, &httpx.Error{Status: abort, Code: "fault_abort",
			Msg: fmt.Sprintf("aborted by fault injection on route %q", s.name)})
		return
	}
	next.ServeHTTP(w, r)
}

// hit reports whether a request falls in pct percent.
func (rf *RouteFaults) hit(pct float64) bool {
	switch {
	case pct >= 100:
		return true
	case pct <= 0:
		return false
	}
	if rf.rand != nil {
		return rf.rand()*100 < pct
	}
	return rand.Float64()*100 < pct
}
