package discovery

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/retry"
	"github.com/switchyard/switchyard/upstream"
)

// ErrNoInstance is returned when a service has no available instance.
var ErrNoInstance = errors.New("no available instance")

// BalancerConfig configures client-side balancing over a watched service.
type BalancerConfig struct {
	// Balance is the policy, as in the gateway's upstreams (balance,
	// hash_on, ...). Default round_robin.
	Balance balance.Config
	// Outlier, when set, ejects instances after consecutive failures seen
	// by this client (passive health), as the gateway does.
	Outlier *health.OutlierConfig
}

// Balancer picks among a watched service's available instances with a
// balance policy over upstream.Targets, rebuilt whenever the instance set
// changes: the same targets, policies and outlier detection as the
// gateway's pools. Safe for concurrent use.
type Balancer struct {
	cfg BalancerConfig
	w   *Watcher
	set atomic.Pointer[memberSet]

	ready chan struct{} // closed once the first instance set is applied
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex // serialises Close
}

type memberSet struct {
	targets []*upstream.Target
	policy  balance.Policy
	outlier *health.Outlier
}

// NewBalancer validates cfg and follows w's instance sets until Close
// (which does not close w). When w already has a set (after <-w.Ready())
// the balancer starts with it: Targets and Pick see it at once. It
// follows w through Changed and Current, so other readers of
// w.Updates() take nothing from it.
func NewBalancer(w *Watcher, cfg BalancerConfig) (*Balancer, error) {
	if err := cfg.Balance.Validate(); err != nil {
		return nil, fmt.Errorf("balancer for %q: %w", w.Service(), err)
	}
	if cfg.Outlier != nil {
		if err := cfg.Outlier.Validate(); err != nil {
			return nil, fmt.Errorf("balancer for %q: outlier: %w", w.Service(), err)
		}
	}
	b := &Balancer{cfg: cfg, w: w, ready: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	var tr Tracker
	if err := b.rebuild(tr.Targets()); err != nil {
		return nil, err
	}
	snap, have, next := w.latest()
	apply := func() {
		if targets, changed := tr.Apply(snap); changed {
			_ = b.rebuild(targets) // the config was validated above
		}
		select {
		case <-b.ready:
		default:
			close(b.ready)
		}
	}
	if have {
		apply()
	}
	go func() {
		defer close(b.done)
		for {
			select {
			case <-b.stop:
				return
			case <-next:
			}
			snap, have, next = w.latest()
			if have {
				apply()
			}
		}
	}()
	return b, nil
}

// Ready is closed once the balancer has applied its watcher's first
// instance set (at once when the watcher was ready before NewBalancer).
func (b *Balancer) Ready() <-chan struct{} { return b.ready }

func (b *Balancer) rebuild(targets []*upstream.Target) error {
	m := &memberSet{targets: targets}
	var err error
	if m.policy, err = balance.New(b.cfg.Balance, targets); err != nil {
		return err
	}
	if b.cfg.Outlier != nil {
		if m.outlier, err = health.NewOutlier(*b.cfg.Outlier, targets); err != nil {
			return err
		}
	}
	b.set.Store(m)
	return nil
}

// Targets returns the current instances as targets (do not modify).
func (b *Balancer) Targets() []*upstream.Target { return b.set.Load().targets }

// Pick returns an available target not in tried, or nil.
func (b *Balancer) Pick(r *http.Request, tried upstream.Tried) *upstream.Target {
	return b.set.Load().policy.Pick(r, tried)
}

// Observe records the outcome of a request to t for outlier detection and
// the latency average (least_response_time). Call it after Pick and
// t.Begin, before t.Done.
func (b *Balancer) Observe(t *upstream.Target, failed bool, latency time.Duration) {
	b.set.Load().observe(t, failed, latency)
}

func (m *memberSet) observe(t *upstream.Target, failed bool, latency time.Duration) {
	now := time.Now()
	if m.outlier != nil {
		m.outlier.Observe(t, failed, now)
	}
	if latency > 0 {
		t.ObserveLatency(now, latency)
	}
}

// Close stops following updates.
func (b *Balancer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
}

// Transport is an http.RoundTripper for service-to-service calls through
// discovery: each request's URL host is replaced by an instance the
// Balancer picks (http://rides/v1/... goes to one of rides' instances).
// A failed attempt is tried again on another instance when that is safe:
// always after a connection failure (the request never arrived), and after
// other errors or a 502/503/504 only for idempotent methods or requests
// with an Idempotency-Key (retry.Safe). Richer policies (budgets, backoff,
// breakers, hedging) stack on top as RoundTrippers of their own.
type Transport struct {
	// Balancer picks instances. Required.
	Balancer *Balancer
	// Base sends the requests. Default http.DefaultTransport.
	Base http.RoundTripper
	// Attempts is the most instances one request tries. Default 3.
	Attempts int
	// MaxReplayBody is the largest request body kept to resend on another
	// instance; larger bodies are sent once. Default 1 MiB.
	MaxReplayBody int64
}

// RoundTrip implements http.RoundTripper.
func (tr *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := tr.Base
	if base == nil {
		base = http.DefaultTransport
	}
	attempts := tr.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	maxBody := tr.MaxReplayBody
	if maxBody <= 0 {
		maxBody = 1 << 20
	}
	var body []byte
	replayable := req.Body == nil || req.Body == http.NoBody
	if !replayable && req.ContentLength >= 0 && req.ContentLength <= maxBody {
		b, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("reading request body: %w", err)
		}
		body, replayable = b, int64(len(b)) <= maxBody
		if !replayable {
			return nil, fmt.Errorf("request body longer than its Content-Length %d", req.ContentLength)
		}
	}
	keyed := req.Header.Get(retry.IdempotencyKeyHeader) != ""
	// One member set for all attempts: tried holds target indexes, which
	// only mean something within one set.
	m := tr.Balancer.set.Load()
	var tried upstream.Tried
	var lastErr error
	var lastResp *http.Response
	for attempt := 1; attempt <= attempts; attempt++ {
		t := m.policy.Pick(req, tried)
		if t == nil {
			break
		}
		tried.Add(t.Index)
		out := req.Clone(req.Context())
		out.URL.Host = t.Address
		out.Host = ""
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = int64(len(body))
		}
		if lastResp != nil {
			lastResp.Body.Close()
			lastResp = nil
		}
		start := time.Now()
		t.Begin()
		resp, err := base.RoundTrip(out)
		failed := err != nil || resp.StatusCode >= 500
		m.observe(t, failed, time.Since(start))
		t.Done(failed)
		if req.Context().Err() != nil {
			if resp != nil {
				return resp, nil
			}
			return nil, err
		}
		var again bool
		if err != nil {
			reached := retry.Classify(err) != retry.ConnectFailure
			again = replayable && retry.Safe(req.Method, keyed, reached)
		} else {
			again = replayable && retry.Safe(req.Method, keyed, true) &&
				(resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout)
		}
		if !again || attempt == attempts {
			return resp, err
		}
		lastErr, lastResp = err, resp
	}
	if lastResp != nil {
		return lastResp, nil
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, fmt.Errorf("%w of service %q", ErrNoInstance, tr.Balancer.w.Service())
}
