package rollout

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/upstream"
)

// Shadow traffic defaults.
const (
	DefaultShadowConcurrency = 32
	MaxShadowConcurrency     = 4096
	// ShadowTimeout bounds one shadow request, and the wait for the real
	// request's outcome to compare with.
	ShadowTimeout = 10 * time.Second
	// ShadowHeader marks the copies, so the new version can tell them from
	// real traffic (and skip side effects it must not repeat).
	ShadowHeader     = "X-Switchyard-Shadow"
	maxMismatchKinds = 32
)

// Shadower sends a copy of requests to the new version's targets, reads
// and discards the answers, and compares status and latency with the real
// requests'. Copies run in their own goroutines, at most a fixed number at
// once (more are dropped and counted), each bounded by ShadowTimeout: the
// real request never waits for its copy. Create it with NewShadower and
// Close it when the rollout ends. Safe for concurrent use.
type Shadower struct {
	targets   atomic.Pointer[[]*upstream.Target]
	next      atomic.Uint64
	transport *http.Transport
	sem       chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mirrored, dropped, compared, uncompared, mismatches, errors atomic.Uint64
	primary, shadow                                             Window

	mu    sync.Mutex
	kinds map[string]uint64 // "200->500": count, at most maxMismatchKinds kinds
}

// NewShadower returns a shadower over the new version's addresses with at
// most concurrency copies in flight (DefaultShadowConcurrency when 0).
func NewShadower(addrs []string, concurrency int) *Shadower {
	if concurrency <= 0 {
		concurrency = DefaultShadowConcurrency
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Shadower{sem: make(chan struct{}, concurrency), ctx: ctx, cancel: cancel, kinds: map[string]uint64{}}
	s.SetTargets(addrs)
	s.transport = &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   concurrency,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: ShadowTimeout,
		DisableCompression:    true,
	}
	return s
}

// SetTargets replaces the addresses copies go to (a discovered upstream's
// instances the selector matches, as they come and go); none stops the
// copies until some are set.
func (s *Shadower) SetTargets(addrs []string) {
	ts := make([]*upstream.Target, len(addrs))
	for i, a := range addrs {
		ts[i] = upstream.NewTarget(a, i, 1)
	}
	s.targets.Store(&ts)
}

// Close stops the copies in flight and releases the connections.
func (s *Shadower) Close() {
	s.cancel()
	s.wg.Wait()
	s.transport.CloseIdleConnections()
}

type outcome struct {
	status int
	d      time.Duration
}

// Mirror implements proxy.Mirror.
func (s *Shadower) Mirror(req *http.Request, body []byte) func(status int, d time.Duration) {
	targets := *s.targets.Load()
	if len(targets) == 0 || s.ctx.Err() != nil {
		return nil
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.dropped.Add(1)
		return nil
	}
	s.mirrored.Add(1)
	t := targets[(s.next.Add(1)-1)%uint64(len(targets))]
	out := req.Clone(s.ctx)
	out.URL.Scheme, out.URL.Host = "http", t.Address
	out.Header.Set(ShadowHeader, "1")
	out.Body, out.ContentLength, out.GetBody = nil, 0, nil
	if len(body) > 0 {
		out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	primary := make(chan outcome, 1)
	s.wg.Add(1)
	go s.send(out, primary)
	return func(status int, d time.Duration) {
		select {
		case primary <- outcome{status, d}:
		default: // called twice: ignore
		}
	}
}

func (s *Shadower) send(out *http.Request, primary <-chan outcome) {
	defer s.wg.Done()
	defer func() { <-s.sem }()
	ctx, cancel := context.WithTimeout(s.ctx, ShadowTimeout)
	defer cancel()
	start := time.Now()
	resp, err := s.transport.RoundTrip(out.WithContext(ctx))
	status := 0
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		status = resp.StatusCode
	} else {
		s.errors.Add(1)
	}
	d := time.Since(start)
	s.shadow.Observe(status == 0 || status >= 500, d)
	var p outcome
	select {
	case p = <-primary:
	case <-ctx.Done():
		s.uncompared.Add(1)
		return
	}
	s.primary.Observe(p.status == 0 || p.status >= 500, p.d)
	s.compared.Add(1)
	if p.status != status {
		s.mismatches.Add(1)
		k := statusText(p.status) + "->" + statusText(status)
		s.mu.Lock()
		if _, ok := s.kinds[k]; ok || len(s.kinds) < maxMismatchKinds {
			s.kinds[k]++
		}
		s.mu.Unlock()
	}
}

func statusText(code int) string {
	if code == 0 {
		return "error"
	}
	return strconv.Itoa(code)
}

// ShadowReport is what shadow traffic found: how many copies were sent,
// dropped (too many in flight) and compared; status mismatches by kind
// ("200->500", "error" for no response); both sides' SLIs.
type ShadowReport struct {
	Mirrored         uint64            `json:"mirrored"`
	Dropped          uint64            `json:"dropped"`
	Compared         uint64            `json:"compared"`
	StatusMismatches uint64            `json:"status_mismatches"`
	MismatchRate     float64           `json:"mismatch_rate"`
	ShadowErrors     uint64            `json:"shadow_errors"`
	Mismatches       map[string]uint64 `json:"mismatches"`
	Primary          SLI               `json:"primary"`
	Shadow           SLI               `json:"shadow"`
	// P99DiffMs is the shadow's p99 minus the primary's.
	P99DiffMs float64 `json:"p99_diff_ms"`
}

// Report returns the counts so far.
func (s *Shadower) Report() ShadowReport {
	r := ShadowReport{Mirrored: s.mirrored.Load(), Dropped: s.dropped.Load(), Compared: s.compared.Load(),
		StatusMismatches: s.mismatches.Load(), ShadowErrors: s.errors.Load(), Primary: s.primary.SLI(), Shadow: s.shadow.SLI(),
		Mismatches: map[string]uint64{}}
	if r.Compared > 0 {
		r.MismatchRate = float64(r.StatusMismatches) / float64(r.Compared)
	}
	r.P99DiffMs = r.Shadow.P99ms - r.Primary.P99ms
	s.mu.Lock()
	keys := make([]string, 0, len(s.kinds))
	for k := range s.kinds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.Mismatches[k] = s.kinds[k]
	}
	s.mu.Unlock()
	return r
}

// ShadowPolicy is the policy of a pool under shadow traffic: the upstream's
// own policy over the stable targets picks (only they serve), and every
// request with a known body is mirrored (proxy.Mirror).
type ShadowPolicy struct {
	balance.Policy
	sh *Shadower
}

// NewShadowPolicy wraps the stable targets' policy.
func NewShadowPolicy(stable balance.Policy, sh *Shadower) *ShadowPolicy {
	return &ShadowPolicy{Policy: stable, sh: sh}
}

// Mirror implements proxy.Mirror.
func (p *ShadowPolicy) Mirror(req *http.Request, body []byte) func(int, time.Duration) {
	return p.sh.Mirror(req, body)
}

// StickyCookie passes the stable policy's sticky cookie on.
func (p *ShadowPolicy) StickyCookie(r *http.Request, t *upstream.Target) *http.Cookie {
	if s, ok := p.Policy.(balance.Sticky); ok {
		return s.StickyCookie(r, t)
	}
	return nil
}
