// Package ratelimit decides whether a request may pass a rate limit (GCRA,
// "100/s with a burst of 200") or a quota (fixed window, "10000/day"), with
// state in memory or shared across gateway replicas through Redis; it also
// offers the FIFO wait of the queue strategy and a max-in-flight limiter.
//
// The gateway builds one key per limited subject (route, consumer, tier or
// client IP, plus the limit's name), asks a Store for a Decision, and then
// drops (429 with Decision.SetHeaders), queues (Queue) or degrades
// (HeaderDegraded) according to the route's Strategy.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"strconv"
	"time"
)

// Kind is the algorithm of a Limit.
type Kind int

const (
	// KindRate is a token bucket computed with GCRA (the generic cell rate
	// algorithm): Limit.Rate is the refill rate and Limit.Burst the bucket
	// size. One timestamp per key, the theoretical arrival time (TAT), is
	// all the state.
	KindRate Kind = iota
	// KindQuota is a fixed-window counter: at most Limit.Rate.N requests in
	// each window of Limit.Rate.Per. Windows are aligned on the Unix epoch
	// (a "/day" window is a UTC day), so every replica and every key agree
	// on when a window resets.
	KindQuota
)

// String returns "rate" or "quota".
func (k Kind) String() string {
	switch k {
	case KindRate:
		return "rate"
	case KindQuota:
		return "quota"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Limit describes one limit. A route may carry several, each checked under
// its own key; Decision.Merge combines their decisions.
//
// A Store keeps state per key, not per (key, Limit): use one Limit per key.
// Changing a key's Rate or Burst (a config reload) is safe, the stored
// state is reinterpreted under the new Limit.
type Limit struct {
	// Kind selects GCRA (KindRate, the zero value) or a fixed-window quota
	// (KindQuota).
	Kind Kind
	// Rate is the refill rate (KindRate) or the quota and its window
	// (KindQuota). Required.
	Rate Rate
	// Burst is, for KindRate, the bucket size: how many requests may pass
	// at once after a quiet period. 0 means Rate.N; otherwise 1 to MaxN.
	// Ignored for KindQuota.
	Burst int
	// MaxWait, for KindRate, lets a request that would exceed the limit
	// reserve the next free slot if that slot is at most MaxWait away: the
	// Decision is then Allowed with Delay > 0, the slot is consumed, and the
	// caller must wait Delay before forwarding (Queue does this). Later
	// reservations get later slots, so waiting requests are served in
	// arrival order. 0 (the default) never reserves. Ignored for KindQuota:
	// a quota is never worth waiting for.
	MaxWait time.Duration
}

// burst returns Burst with its default applied.
func (l Limit) burst() int {
	if l.Burst == 0 {
		return l.Rate.N
	}
	return l.Burst
}

// Validate reports every problem of l at once (errors.Join).
func (l Limit) Validate() error {
	var errs []error
	if l.Kind != KindRate && l.Kind != KindQuota {
		errs = append(errs, fmt.Errorf("limit kind %d: expected rate or quota", int(l.Kind)))
	}
	if err := l.Rate.Validate(); err != nil {
		errs = append(errs, err)
	}
	if l.Kind != KindQuota {
		if l.Burst < 0 || l.Burst > MaxN {
			errs = append(errs, fmt.Errorf("limit burst %d: expected 0 (default: the rate's count) to %d", l.Burst, MaxN))
		} else if iv := l.Rate.Interval(); iv > 0 && int64(l.burst()) > int64(MaxPer/iv) {
			errs = append(errs, fmt.Errorf("limit burst %d at rate %s: the bucket would take longer than %v to fill",
				l.Burst, l.Rate, MaxPer))
		}
		if l.MaxWait < 0 {
			errs = append(errs, fmt.Errorf("limit max wait %v: expected 0 or a positive duration", l.MaxWait))
		}
	}
	return errors.Join(errs...)
}

// Decision is a Store's answer for one request.
type Decision struct {
	// Allowed reports whether the request may proceed (after Delay).
	Allowed bool
	// Limit is the burst (KindRate) or the quota (KindQuota): the most
	// requests that may pass at once. Sent as RateLimit-Limit.
	Limit int
	// Remaining is how many more requests would pass right now, after this
	// one. Sent as RateLimit-Remaining.
	Remaining int
	// ResetAfter is how long until the bucket is full again (KindRate) or
	// the window ends (KindQuota), counted from the decision's now. Sent,
	// in whole seconds rounded up, as RateLimit-Reset.
	ResetAfter time.Duration
	// RetryAfter is, when not Allowed, how long until a request would be
	// allowed; 0 when Allowed. Sent, in whole seconds rounded up, as
	// Retry-After.
	RetryAfter time.Duration
	// Delay is, when Allowed through a reservation (Limit.MaxWait), how long
	// the caller must wait before forwarding; otherwise 0.
	Delay time.Duration
}

// Header names set by Decision.SetHeaders, and the header of the degrade
// strategy.
const (
	HeaderLimit      = "RateLimit-Limit"
	HeaderRemaining  = "RateLimit-Remaining"
	HeaderReset      = "RateLimit-Reset"
	HeaderRetryAfter = "Retry-After"
	// HeaderDegraded is added, with the value "1", to a request forwarded
	// over its limit under StrategyDegrade, so the backend can serve a
	// cheaper answer.
	HeaderDegraded = "X-Degraded"
)

// SetHeaders sets RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset
// (IETF draft-ietf-httpapi-ratelimit-headers, seconds) on h, and Retry-After
// (seconds, at least 1) when the request is not allowed.
func (d Decision) SetHeaders(h http.Header) {
	// Assign under the canonical keys directly: Header.Set would
	// canonicalise "RateLimit-Limit" (not canonical) on every request.
	h[canonLimit] = []string{strconv.Itoa(d.Limit)}
	h[canonRemaining] = []string{strconv.Itoa(max(d.Remaining, 0))}
	h[canonReset] = []string{strconv.FormatInt(ceilSeconds(d.ResetAfter), 10)}
	if !d.Allowed {
		h[canonRetryAfter] = []string{strconv.FormatInt(max(ceilSeconds(d.RetryAfter), 1), 10)}
	}
}

// Canonical forms of the header names (what Header.Set would store).
const (
	canonLimit      = "Ratelimit-Limit"
	canonRemaining  = "Ratelimit-Remaining"
	canonReset      = "Ratelimit-Reset"
	canonRetryAfter = "Retry-After"
)

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Merge combines the decisions of two limits applying to one request into
// the one to act on: refused if either refused (then the longer
// RetryAfter); otherwise the one with fewer Remaining, with the longer
// Delay of the two. The zero Decision is not a neutral element; start from
// the first limit's decision.
func (d Decision) Merge(o Decision) Decision {
	switch {
	case d.Allowed != o.Allowed:
		if d.Allowed {
			return o
		}
		return d
	case !d.Allowed:
		if o.RetryAfter > d.RetryAfter {
			return o
		}
		return d
	}
	r := d
	if o.Remaining < d.Remaining || (o.Remaining == d.Remaining && o.ResetAfter > d.ResetAfter) {
		r = o
	}
	r.Delay = max(d.Delay, o.Delay)
	return r
}

// Store keeps limiter state and decides. Implementations are safe for
// concurrent use.
type Store interface {
	// Allow counts one request under key against lim at time now and
	// returns the decision. A refused request consumes nothing. An error
	// means lim is invalid (ErrInvalidLimit) or the state could not be
	// reached (ErrUnavailable); with ErrUnavailable the Decision still says
	// what to do under the store's failure policy, and the error is for
	// logging. Stores that keep their own clock (Redis with ServerClock)
	// ignore now.
	Allow(ctx context.Context, key string, lim Limit, now time.Time) (Decision, error)
}

// Errors matched with errors.Is.
var (
	// ErrInvalidLimit is wrapped by Allow when the Limit is not valid.
	ErrInvalidLimit = errors.New("invalid limit")
	// ErrUnavailable is wrapped by Allow when the shared state could not be
	// read or written (Redis down or slow).
	ErrUnavailable = errors.New("rate limit store unavailable")
)

// checkLimit is the per-request validation: cheap, allocation-free unless
// the limit is invalid (full validation belongs to config time). It
// returns the emission interval of a KindRate limit.
func checkLimit(lim Limit) (time.Duration, error) {
	r := lim.Rate
	if r.N < 1 || r.N > MaxN || r.Per < MinPer || r.Per > MaxPer || r.Per < time.Duration(r.N) ||
		lim.Burst < 0 || lim.Burst > MaxN || lim.MaxWait < 0 || (lim.Kind != KindRate && lim.Kind != KindQuota) {
		return 0, fmt.Errorf("checking limit %s %s burst %d: %w", lim.Kind, r, lim.Burst, ErrInvalidLimit)
	}
	iv := r.Per / time.Duration(r.N)
	if hi, lo := bits.Mul64(uint64(lim.burst()), uint64(iv)); lim.Kind == KindRate && (hi != 0 || lo > uint64(MaxPer)) {
		return 0, fmt.Errorf("checking limit %s burst %d: the bucket takes over %v to fill: %w", r, lim.Burst, MaxPer, ErrInvalidLimit)
	}
	return iv, nil
}

// gcra is the pure GCRA step of the memory store (redisScript is the same
// in Lua). Times are Unix nanoseconds. tat is the stored theoretical
// arrival time: when the bucket will be full again (pass now for a key
// without state); interval is lim's emission interval (checkLimit). It
// returns the decision and, when store is true, the new TAT to keep; a
// refused request changes nothing.
//
// With interval iv = Per/N and bucket width b·iv, a request conforms when
// max(tat, now) + iv - b·iv <= now, and then the TAT moves on by iv.
func gcra(tat, now int64, interval time.Duration, lim Limit) (d Decision, newTAT int64, store bool) {
	iv := int64(interval)
	b := int64(lim.burst())
	width := b * iv // the whole bucket, in time
	d.Limit = int(b)
	if tat < now {
		tat = now
	}
	newTAT = tat + iv
	wait := newTAT - width - now // how long until this request conforms
	if wait > 0 && wait > int64(lim.MaxWait) {
		d.ResetAfter = time.Duration(tat - now)
		d.RetryAfter = time.Duration(wait)
		return d, 0, false
	}
	d.Allowed = true
	if wait > 0 {
		d.Delay = time.Duration(wait)
	} else {
		d.Remaining = int((now + width - newTAT) / iv)
	}
	d.ResetAfter = time.Duration(newTAT - now)
	return d, newTAT, true
}

// fixedWindow is the pure quota step: count is the number of requests
// already counted in the window starting at start (ns). It returns the
// decision and the state to store.
func fixedWindow(start int64, count int, now int64, lim Limit) (d Decision, newStart int64, newCount int, store bool) {
	per := int64(lim.Rate.Per)
	ws := now - mod(now, per)
	switch {
	case start > ws: // the clock stepped back across a window boundary: keep counting
		ws = start
	case start != ws:
		count = 0
	}
	d.Limit = lim.Rate.N
	d.ResetAfter = time.Duration(ws + per - now)
	if count >= lim.Rate.N {
		d.RetryAfter = d.ResetAfter
		return d, 0, 0, false
	}
	count++
	d.Allowed = true
	d.Remaining = lim.Rate.N - count
	return d, ws, count, true
}

// mod is the non-negative remainder, so windows before 1970 align too.
func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
