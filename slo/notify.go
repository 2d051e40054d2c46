package slo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// WebhookOptions configure alert delivery.
type WebhookOptions struct {
	// Client sends the POSTs. Default: a client that ignores proxy
	// settings from the environment.
	Client *http.Client
	// Timeout bounds one attempt. Default 5s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles from MinBackoff (with jitter). Defaults 500ms and 1m.
	MinBackoff, MaxBackoff time.Duration
	// Attempts is how many times an event is tried before it is dropped
	// (and logged). Default 10.
	Attempts int
	// Queue is how many events wait per URL; when it is full the oldest
	// is dropped (and logged). Default 256.
	Queue int
}

// Event is the JSON body POSTed to webhooks when an alert fires
// ("status": "firing") or resolves ("resolved").
type Event struct {
	Status          string    `json:"status"`
	SLO             string    `json:"slo"`
	Alert           string    `json:"alert"`
	Severity        string    `json:"severity"`
	Kind            string    `json:"kind"`
	Route           string    `json:"route,omitempty"`
	Upstream        string    `json:"upstream,omitempty"`
	Objective       float64   `json:"objective"`
	Window          string    `json:"window"`
	BurnRate        float64   `json:"burn_rate"`
	LongWindow      string    `json:"long_window"`
	ShortWindow     string    `json:"short_window"`
	LongBurn        float64   `json:"long_burn"`
	ShortBurn       float64   `json:"short_burn"`
	SLI             float64   `json:"sli"`
	BudgetRemaining float64   `json:"budget_remaining"`
	At              time.Time `json:"at"`
	Summary         string    `json:"summary"`
}

func newEvent(s Status, a AlertStatus, now time.Time) Event {
	st := "resolved"
	if a.Firing {
		st = "firing"
	}
	target := "route " + s.Route
	if s.Upstream != "" {
		target = "upstream " + s.Upstream
	}
	return Event{Status: st, SLO: s.Name, Alert: a.Name, Severity: a.Severity, Kind: s.Kind, Route: s.Route, Upstream: s.Upstream,
		Objective: s.Objective, Window: s.Window, BurnRate: a.BurnRate, LongWindow: a.LongWindow, ShortWindow: a.ShortWindow,
		LongBurn: a.LongBurn, ShortBurn: a.ShortBurn, SLI: s.SLI, BudgetRemaining: s.BudgetRemaining, At: now.UTC(),
		Summary: fmt.Sprintf("SLO %s (%s of %s) %s: error budget burning %.1fx over %s and %.1fx over %s (alert at %gx); %.1f%% of the budget left",
			s.Name, s.Kind, target, st, a.LongBurn, a.LongWindow, a.ShortBurn, a.ShortWindow, a.BurnRate, s.BudgetRemaining*100)}
}

// notifier delivers events to one URL, in order, from its own goroutine:
// a slow or failing receiver delays only its own events, never the
// evaluation and never a request.
type notifier struct {
	url    string
	logURL string // url without its query, which may hold a token
	opts   WebhookOptions
	log    *slog.Logger

	mu      sync.Mutex
	queue   []Event
	wake    chan struct{} // capacity 1: an event was queued or the notifier retired
	retired bool
}

func newNotifier(url string, o WebhookOptions, log *slog.Logger) *notifier {
	if o.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		o.Client = &http.Client{Transport: tr}
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.Attempts <= 0 {
		o.Attempts = 10
	}
	if o.Queue <= 0 {
		o.Queue = 256
	}
	logURL := url
	if i := strings.IndexAny(logURL, "?#"); i >= 0 {
		logURL = logURL[:i] + "?..."
	}
	return &notifier{url: url, logURL: logURL, opts: o, log: log, wake: make(chan struct{}, 1)}
}

// enqueue adds an event without blocking; a full queue drops its oldest.
func (n *notifier) enqueue(ev Event) {
	n.mu.Lock()
	if len(n.queue) >= n.opts.Queue {
		n.log.Error("slo webhook queue full: dropping the oldest event", "url", n.logURL, "slo", n.queue[0].SLO, "alert", n.queue[0].Alert)
		n.queue = n.queue[1:]
	}
	n.queue = append(n.queue, ev)
	n.mu.Unlock()
	n.signal()
}

func (n *notifier) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// retire ends the notifier once its queue is delivered (its URL left the
// config).
func (n *notifier) retire() {
	n.mu.Lock()
	n.retired = true
	n.mu.Unlock()
	n.signal()
}

func (n *notifier) next() (Event, bool, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.queue) == 0 {
		return Event{}, false, n.retired
	}
	ev := n.queue[0]
	return ev, true, false
}

func (n *notifier) pop() {
	n.mu.Lock()
	if len(n.queue) > 0 {
		n.queue = n.queue[1:]
	}
	n.mu.Unlock()
}

// flushBudget bounds the last delivery attempts when the engine stops.
const flushBudget = 2 * time.Second

// run delivers queued events until stop is closed (then it tries each
// queued event once more, within flushBudget) or the notifier is retired
// and empty.
func (n *notifier) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			n.flush()
			return
		default:
		}
		ev, ok, retired := n.next()
		if retired {
			return
		}
		if !ok {
			select {
			case <-n.wake:
			case <-stop:
			}
			continue
		}
		if n.deliver(ev, stop) {
			n.pop()
		}
	}
}

// flush tries every queued event once, within flushBudget in all.
func (n *notifier) flush() {
	n.mu.Lock()
	q := n.queue
	n.queue = nil
	n.mu.Unlock()
	deadline := time.Now().Add(flushBudget)
	for _, ev := range q {
		body, _ := json.Marshal(ev)
		if time.Now().Before(deadline) {
			if code, err := n.post(body, nil, time.Until(deadline)); err == nil && code/100 == 2 {
				continue
			}
		}
		n.log.Error("slo webhook undelivered at shutdown", "url", n.logURL, "slo", ev.SLO, "alert", ev.Alert, "status", ev.Status)
	}
}

// deliver POSTs ev with retries and backoff; it gives up after Attempts
// or on a 4xx other than 408 and 429. It returns false when stop
// interrupted it (the event stays queued for the flush).
func (n *notifier) deliver(ev Event, stop <-chan struct{}) bool {
	body, _ := json.Marshal(ev)
	backoff := n.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		code, err := n.post(body, stop, n.opts.Timeout)
		switch {
		case err == nil && code/100 == 2:
			n.log.Info("slo webhook delivered", "url", n.logURL, "slo", ev.SLO, "alert", ev.Alert, "status", ev.Status, "attempt", attempt)
			return true
		case err == nil && code/100 == 4 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
			n.log.Error("slo webhook refused the event: not retried", "url", n.logURL, "slo", ev.SLO, "alert", ev.Alert, "http_status", code)
			return true
		}
		why := fmt.Sprintf("status %d", code)
		if err != nil {
			why = err.Error()
		}
		if attempt >= n.opts.Attempts {
			n.log.Error("slo webhook failed: event dropped", "url", n.logURL, "slo", ev.SLO, "alert", ev.Alert, "status", ev.Status,
				"attempts", attempt, "error", why)
			return true
		}
		n.log.Warn("slo webhook failed: retrying", "url", n.logURL, "slo", ev.SLO, "alert", ev.Alert, "attempt", attempt, "error", why,
			"backoff", backoff.String())
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return false
		}
		backoff = min(backoff*2, n.opts.MaxBackoff)
	}
}

// post sends one attempt, cancelled after timeout or when stop closes.
func (n *notifier) post(body []byte, stop <-chan struct{}, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if stop != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-stop:
				cancel()
			case <-done:
			}
		}()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "switchyard-slo")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
