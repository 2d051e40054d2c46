package rollout

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/upstream"
)

// Split is the balance.Policy of a pool under a rollout: each pick first
// chooses a cohort (stable or canary), then a target of that cohort with
// the upstream's own policy built over the cohort. When the chosen cohort
// has no available target the other one serves, so a rollout never turns
// a request away that the pool could serve. It also observes the outcome
// of every attempt (proxy.AttemptObserver) into the cohort's Window.
// Safe for concurrent use; Pick allocates nothing.
type Split struct {
	stable, canary balance.Policy
	canaryIdx      []bool // by Target.Index: whether the target is a canary
	targets        []*upstream.Target
	share          *Share
}

var _ balance.Policy = (*Split)(nil)

// Share is the live traffic share of one rollout and where its attempts
// are counted; it outlives the Split policies built over changing target
// sets (reloads, discovery). Safe for concurrent use.
type Share struct {
	// basis points (0..10000) of requests sent to the canary
	bp atomic.Int64
	// header or cookie whose hashed value picks the cohort (A/B); "" = random
	header, cookie string
	windows        atomic.Pointer[windowPair]
}

type windowPair struct{ stable, canary *Window }

// NewShare returns a share of percent for the canary, choosing the cohort
// at random, or by a hash of the header's or cookie's value when one is
// named (a request without it goes to the stable cohort).
func NewShare(percent float64, header, cookie string) *Share {
	s := &Share{header: header, cookie: cookie}
	s.SetPercent(percent)
	s.ResetWindows()
	return s
}

// SetPercent sets the canary's share (clamped to 0..100).
func (s *Share) SetPercent(p float64) {
	s.bp.Store(int64(math.Round(math.Max(0, math.Min(100, p)) * 100)))
}

// Percent returns the canary's share.
func (s *Share) Percent() float64 { return float64(s.bp.Load()) / 100 }

// ResetWindows starts new observation windows for both cohorts (a new
// step) and returns the ones that ended.
func (s *Share) ResetWindows() (stable, canary *Window) {
	old := s.windows.Swap(&windowPair{stable: &Window{}, canary: &Window{}})
	if old == nil {
		return nil, nil
	}
	return old.stable, old.canary
}

// Windows returns the current observation windows.
func (s *Share) Windows() (stable, canary *Window) {
	w := s.windows.Load()
	return w.stable, w.canary
}

// canaryFor decides the cohort of one request.
func (s *Share) canaryFor(r *http.Request) bool {
	bp := s.bp.Load()
	switch {
	case bp <= 0:
		return false
	case s.header == "" && s.cookie == "":
		return bp >= 10000 || rand.Int64N(10000) < bp
	case r == nil:
		return false
	}
	var v string
	if s.header != "" {
		v = r.Header.Get(s.header)
	} else if c, err := r.Cookie(s.cookie); err == nil {
		v = c.Value
	}
	if v == "" {
		return false
	}
	return Cohort(v) < bp
}

// Cohort maps a header or cookie value to a bucket 0..9999 (FNV-1a): the
// value lands in the canary cohort when its bucket is below the share in
// basis points, so a user keeps the same cohort while the share holds.
func Cohort(v string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(v))
	return int64(h.Sum64() % 10000)
}

// NewSplit returns the policy over targets (whose Index fields are their
// positions), isCanary[i] saying which are the new version's; build makes
// the upstream's own policy over one cohort's targets.
func NewSplit(targets []*upstream.Target, isCanary []bool, share *Share, build func([]*upstream.Target) (balance.Policy, error)) (*Split, error) {
	var st, ca []*upstream.Target
	for i, t := range targets {
		if isCanary[i] {
			ca = append(ca, t)
		} else {
			st = append(st, t)
		}
	}
	sp, err := build(st)
	if err != nil {
		return nil, err
	}
	cp, err := build(ca)
	if err != nil {
		return nil, err
	}
	return &Split{stable: sp, canary: cp, canaryIdx: append([]bool(nil), isCanary...),
		targets: append([]*upstream.Target(nil), targets...), share: share}, nil
}

// Pick implements balance.Policy.
func (p *Split) Pick(r *http.Request, tried upstream.Tried) *upstream.Target {
	first, second := p.stable, p.canary
	if p.share.canaryFor(r) {
		first, second = p.canary, p.stable
	}
	if t := first.Pick(r, tried); t != nil {
		return t
	}
	return second.Pick(r, tried)
}

// IsCanary reports whether t is one of the new version's targets.
func (p *Split) IsCanary(t *upstream.Target) bool {
	i := t.Index
	return i >= 0 && i < len(p.targets) && p.targets[i] == t && p.canaryIdx[i]
}

// ObserveAttempt counts one attempt's outcome in its cohort's window
// (proxy.AttemptObserver).
func (p *Split) ObserveAttempt(t *upstream.Target, failed bool, d time.Duration) {
	st, ca := p.share.Windows()
	if p.IsCanary(t) {
		ca.Observe(failed, d)
	} else {
		st.Observe(failed, d)
	}
}

// StickyCookie passes the stable cohort's sticky cookie on (the cookie
// policy), so a cookie-balanced upstream stays sticky under a rollout.
func (p *Split) StickyCookie(r *http.Request, t *upstream.Target) *http.Cookie {
	pol := p.stable
	if p.IsCanary(t) {
		pol = p.canary
	}
	if s, ok := pol.(balance.Sticky); ok {
		return s.StickyCookie(r, t)
	}
	return nil
}

// Window counts one cohort's attempts over one step: requests, failures
// (connect errors, timeouts, 5xx) and a latency histogram for the p99.
// Safe for concurrent use; Observe allocates nothing.
type Window struct {
	requests, failures atomic.Uint64
	buckets            [numBuckets]atomic.Uint64
}

// Latency buckets: 0.1 ms doubling by quarter powers (each bucket about
// 19% wider than the last) up to about 105 s; the p99 is reported as the
// upper bound of its bucket.
const (
	numBuckets = 81
	bucketBase = 100 * time.Microsecond
)

func bucketOf(d time.Duration) int {
	if d <= bucketBase {
		return 0
	}
	b := int(math.Ceil(4 * math.Log2(float64(d)/float64(bucketBase))))
	return min(b, numBuckets-1)
}

func bucketUpper(b int) time.Duration {
	return time.Duration(float64(bucketBase) * math.Pow(2, float64(b)/4))
}

// Observe counts one attempt.
func (w *Window) Observe(failed bool, d time.Duration) {
	w.requests.Add(1)
	if failed {
		w.failures.Add(1)
	}
	w.buckets[bucketOf(d)].Add(1)
}

// SLI is a window's summary.
type SLI struct {
	Requests  uint64  `json:"requests"`
	ErrorRate float64 `json:"error_rate"`
	P99ms     float64 `json:"p99_ms"`
}

// SLI summarises the window.
func (w *Window) SLI() SLI {
	if w == nil {
		return SLI{}
	}
	n := w.requests.Load()
	if n == 0 {
		return SLI{}
	}
	s := SLI{Requests: n, ErrorRate: float64(w.failures.Load()) / float64(n)}
	var total uint64
	counts := make([]uint64, numBuckets)
	for i := range w.buckets {
		counts[i] = w.buckets[i].Load()
		total += counts[i]
	}
	rank := uint64(math.Ceil(0.99 * float64(total)))
	var acc uint64
	for i, c := range counts {
		acc += c
		if acc >= rank && c > 0 {
			s.P99ms = float64(bucketUpper(i).Microseconds()) / 1000
			break
		}
	}
	return s
}
