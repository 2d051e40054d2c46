package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram geometry: values in microseconds from 1µs to one hour, three
// significant digits (0.1% resolution).
const (
	histLowest  = 1
	histHighest = int64(time.Hour / time.Microsecond)
	histDigits  = 3
	// numShards spreads recording over a few mutex-protected histogram sets
	// instead of one per connection (one set is ~0.75 MB).
	numShards = 8
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

func micros(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	if us < histLowest {
		return histLowest
	}
	if us > histHighest {
		return histHighest
	}
	return us
}

// shard is one set of counters and histograms; workers record into
// shard[worker % numShards] under its mutex.
type shard struct {
	mu          sync.Mutex
	corrected   *hdrhistogram.Histogram // done - intended
	uncorrected *hdrhistogram.Histogram // done - sent
	lag         *hdrhistogram.Histogram // sent - intended
	window      *hdrhistogram.Histogram // corrected, since the last tick
	doneAt      *hdrhistogram.Histogram // completion time since the phase start
	start       time.Time               // the phase start
	ok, failed  int64
	winOK       int64
	winFailed   int64
	statuses    map[int]int64
	kinds       [numKinds]int64
	samples     [numKinds]string // the first error message of each kind
	timeout     time.Duration    // for the samples' wording
	lateConn    int64
	lateCPU     int64
	_           [64]byte // keep hot shards on separate cache lines
}

type recorder struct {
	shards [numShards]shard
}

func newRecorder(start time.Time, timeout time.Duration) *recorder {
	r := &recorder{}
	for i := range r.shards {
		s := &r.shards[i]
		s.corrected, s.uncorrected, s.lag, s.window = newHist(), newHist(), newHist(), newHist()
		s.doneAt, s.start, s.timeout = newHist(), start, timeout
		s.statuses = map[int]int64{}
	}
	return r
}

// outcome is one finished request.
type outcome struct {
	intended, sent, done time.Time
	status               int
	kind                 ErrorKind
	err                  error // the transport error, if any
	lateConn, lateCPU    bool
}

func (s *shard) record(o *outcome) {
	s.mu.Lock()
	s.lag.RecordValue(micros(o.sent.Sub(o.intended)))
	if o.status != 0 {
		// Only complete responses have a latency; transport failures have
		// none (a timeout's would only be the timeout).
		c := micros(o.done.Sub(o.intended))
		s.corrected.RecordValue(c)
		s.window.RecordValue(c)
		s.uncorrected.RecordValue(micros(o.done.Sub(o.sent)))
		s.statuses[o.status]++
	}
	if o.kind == KindNone {
		s.ok++
		s.winOK++
	} else {
		s.failed++
		s.winFailed++
		s.kinds[o.kind]++
		if s.samples[o.kind] == "" {
			s.samples[o.kind] = describe(o.kind, o.status, o.err, s.timeout)
		}
	}
	if o.lateConn {
		s.lateConn++
	}
	if o.lateCPU {
		s.lateCPU++
	}
	s.doneAt.RecordValue(micros(o.done.Sub(s.start)))
	s.mu.Unlock()
}

// pool owns the connections: conns[worker][endpoint]. A worker uses only its
// own row; mu guards the row slices only for abort, which may run from any
// goroutine.
type pool struct {
	eps     []endpoint
	timeout time.Duration
	mu      sync.Mutex
	conns   [][]*httpConn
}

func newPool(eps []endpoint, workers int, timeout time.Duration) *pool {
	p := &pool{eps: eps, timeout: timeout, conns: make([][]*httpConn, workers)}
	for i := range p.conns {
		p.conns[i] = make([]*httpConn, len(eps))
	}
	return p
}

func (p *pool) get(w, ep int) *httpConn {
	p.mu.Lock()
	c := p.conns[w][ep]
	p.mu.Unlock()
	return c
}

func (p *pool) dial(ctx context.Context, w, ep int, deadline time.Time) (*httpConn, error) {
	timeout := time.Until(deadline)
	if timeout > p.timeout {
		timeout = p.timeout
	}
	c, err := dial(ctx, p.eps[ep], timeout)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.conns[w][ep] = c
	p.mu.Unlock()
	if ctx.Err() != nil { // raced with abort
		c.nc.SetDeadline(time.Unix(1, 0))
	}
	return c, nil
}

func (p *pool) drop(w, ep int) {
	p.mu.Lock()
	c := p.conns[w][ep]
	p.conns[w][ep] = nil
	p.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// abort makes every in-flight read or write fail now.
func (p *pool) abort() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, row := range p.conns {
		for _, c := range row {
			if c != nil {
				c.nc.SetDeadline(time.Unix(1, 0))
			}
		}
	}
}

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, row := range p.conns {
		for i, c := range row {
			if c != nil {
				c.nc.Close()
				row[i] = nil
			}
		}
	}
}

// warm opens every connection before the clock starts, so the first
// requests do not pay for the handshakes.
func (p *pool) warm(ctx context.Context) {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	deadline := time.Now().Add(p.timeout)
	for w := range p.conns {
		for ep := range p.eps {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				// A failure is left for the request to meet and record. A
				// warm connection counts as reused: if the server closed it
				// while it sat idle, the first request retries on a new one.
				if c, err := p.dial(ctx, w, ep, deadline); err == nil {
					c.reused = true
				}
			}()
		}
	}
	wg.Wait()
}

// phase is one constant-rate stretch of a run: a single run has one, a ramp
// one per step. Slot i of the phase is due at start + i/rate; whichever
// worker (connection) is free claims the next slot, sleeps until it is due
// and sends it, so a slow response delays no other slot unless every
// connection is busy — and even then latency runs from the due time.
type phase struct {
	rate      float64
	conns     int64
	total     int64
	start     time.Time
	stopAt    time.Time // no sends after this; later slots are unsent
	maxLag    time.Duration
	timeout   time.Duration
	reqs      []request
	schedule  []int // target index by slot modulo len
	pool      *pool
	pacer     *pacer
	rec       *recorder
	next      atomic.Int64
	unsent    atomic.Int64
	inflight  atomic.Int64
	maxFlight atomic.Int64
}

// phaseStats is a finished phase's merged numbers.
type phaseStats struct {
	rate                   float64
	planned                int64
	elapsed                time.Duration
	corrected, uncorrected *hdrhistogram.Histogram
	lag                    *hdrhistogram.Histogram
	ok, failed, unsent     int64
	lateConn, lateCPU      int64
	maxInflight            int64
	doneAt                 *hdrhistogram.Histogram
	windowCount            int64         // completions inside the window
	window                 time.Duration // see stats
	statuses               map[int]int64
	kinds                  [numKinds]int64
	samples                [numKinds]string
	interrupted            bool
}

func (ps *phaseStats) completed() int64 { return ps.ok + ps.failed }

// throughput is successful responses per second of the phase: the
// completion rate inside the window times the share of successes.
func (ps *phaseStats) throughput() float64 {
	n := ps.completed()
	switch {
	case n == 0:
		return 0
	case ps.window > 0:
		return float64(ps.windowCount) / ps.window.Seconds() * float64(ps.ok) / float64(n)
	case ps.elapsed > 0:
		return float64(ps.ok) / ps.elapsed.Seconds()
	}
	return 0
}

// ticker collects the timeline while a phase runs.
type ticker struct {
	runStart time.Time
	interval time.Duration
	progress func(Progress)
	cum      *hdrhistogram.Histogram // corrected, whole run so far
	win      *hdrhistogram.Histogram
	okSoFar  int64
	errSoFar int64
	timeline []Interval
}

func (t *ticker) tick(ph *phase, now time.Time, last time.Time) {
	t.win.Reset()
	var ok, failed, late int64
	for i := range ph.rec.shards {
		s := &ph.rec.shards[i]
		s.mu.Lock()
		t.win.Merge(s.window)
		s.window.Reset()
		ok += s.winOK
		failed += s.winFailed
		s.winOK, s.winFailed = 0, 0
		late += s.lateConn + s.lateCPU
		s.mu.Unlock()
	}
	t.cum.Merge(t.win)
	t.okSoFar += ok
	t.errSoFar += failed
	span := now.Sub(last).Seconds()
	if span <= 0 {
		return
	}
	iv := Interval{
		Time:        now.Sub(t.runStart).Seconds(),
		OfferedRate: ph.rate,
		Requests:    ok + failed,
		Errors:      failed,
		Throughput:  float64(ok) / span,
		P50:         ms(t.win.ValueAtQuantile(50)),
		P99:         ms(t.win.ValueAtQuantile(99)),
		Max:         ms(maxOf(t.win)),
	}
	t.timeline = append(t.timeline, iv)
	if t.progress != nil {
		t.progress(Progress{
			Elapsed:     now.Sub(t.runStart),
			OfferedRate: ph.rate,
			Throughput:  iv.Throughput,
			P99:         time.Duration(t.cum.ValueAtQuantile(99)) * time.Microsecond,
			Requests:    t.okSoFar + t.errSoFar,
			Errors:      t.errSoFar,
			Late:        late + ph.unsent.Load(),
			Interval:    iv,
			Latencies:   t.win,
		})
	}
}

func maxOf(h *hdrhistogram.Histogram) int64 {
	if h.TotalCount() == 0 {
		return 0
	}
	return h.Max()
}

// runPhase runs one phase at rate for d and returns its numbers. It returns
// early, with interrupted set, when ctx is cancelled.
// runEnv is what the phases of one run share.
type runEnv struct {
	cfg      *Config // with defaults applied
	pool     *pool
	reqs     []request
	schedule []int // target index by slot modulo len
	ticker   *ticker
}

func runPhase(ctx context.Context, env *runEnv, rate float64, d time.Duration) *phaseStats {
	cfg, p, tk := env.cfg, env.pool, env.ticker
	total := int64(rate*d.Seconds() + 0.5)
	if total < 1 {
		total = 1
	}
	ph := &phase{
		rate:     rate,
		conns:    int64(len(p.conns)),
		total:    total,
		start:    time.Now(),
		maxLag:   cfg.MaxLag,
		timeout:  cfg.Timeout,
		reqs:     env.reqs,
		schedule: env.schedule,
		pool:     p,
		pacer:    newPacer(),
		rec:      nil, // set below, once start is known
	}
	ph.stopAt = ph.start.Add(d + cfg.Timeout)
	ph.rec = newRecorder(ph.start, cfg.Timeout)

	stopAbort := context.AfterFunc(ctx, p.abort)
	defer stopAbort()

	var wg sync.WaitGroup
	for w := range p.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ph.worker(ctx, w)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	last := ph.start
	tm := time.NewTicker(tk.interval)
	defer tm.Stop()
loop:
	for {
		select {
		case now := <-tm.C:
			tk.tick(ph, now, last)
			last = now
		case <-done:
			break loop
		}
	}
	end := time.Now()
	if end.Sub(last) >= tk.interval/10 {
		tk.tick(ph, end, last)
	} else {
		tk.tick(ph, end, end) // flush the window into the totals only
	}
	return ph.stats(ctx, d)
}

func (ph *phase) stats(ctx context.Context, d time.Duration) *phaseStats {
	st := &phaseStats{
		rate:        ph.rate,
		planned:     ph.total,
		corrected:   newHist(),
		uncorrected: newHist(),
		lag:         newHist(),
		doneAt:      newHist(),
		statuses:    map[int]int64{},
		unsent:      ph.unsent.Load(),
		maxInflight: ph.maxFlight.Load(),
		interrupted: ctx.Err() != nil,
	}
	for i := range ph.rec.shards {
		s := &ph.rec.shards[i]
		s.mu.Lock()
		st.corrected.Merge(s.corrected)
		st.uncorrected.Merge(s.uncorrected)
		st.lag.Merge(s.lag)
		st.doneAt.Merge(s.doneAt)
		st.ok += s.ok
		st.failed += s.failed
		st.lateConn += s.lateConn
		st.lateCPU += s.lateCPU
		for k, v := range s.statuses {
			st.statuses[k] += v
		}
		for k, v := range s.kinds {
			st.kinds[k] += v
			if st.samples[k] == "" {
				st.samples[k] = s.samples[k]
			}
		}
		s.mu.Unlock()
	}
	st.elapsed = d
	if st.interrupted {
		st.elapsed = time.Since(ph.start)
	}
	// The completion rate is counted in a window as long as the phase,
	// shifted by the median latency: a service that keeps up completes
	// every request in it (whatever its latency), one that cannot completes
	// only its capacity's worth. (Dividing all completions by the time to
	// the last one would be biased by that one request's latency.)
	lo := st.corrected.ValueAtQuantile(50)
	hi := lo + d.Microseconds()
	if st.interrupted {
		hi = st.elapsed.Microseconds()
	}
	if hi > lo {
		st.window = time.Duration(hi-lo) * time.Microsecond
		for _, b := range st.doneAt.Distribution() {
			if b.Count > 0 && b.From >= lo && b.From < hi {
				st.windowCount += b.Count
			}
		}
	}
	return st
}

// worker is one connection's loop: claim the next slot, wait until it is
// due, send, record.
func (ph *phase) worker(ctx context.Context, w int) {
	sh := &ph.rec.shards[w%numShards]
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	interval := 1 / ph.rate // seconds between slots
	var o outcome
	for {
		claimed := time.Now()
		i := ph.next.Add(1) - 1
		if i >= ph.total {
			return
		}
		if ctx.Err() != nil {
			return
		}
		intended := ph.start.Add(time.Duration(float64(i) * interval * float64(time.Second)))
		if claimed.After(ph.stopAt) {
			ph.unsent.Add(1)
			continue
		}
		if !ph.pacer.waitUntil(ctx, timer, intended) {
			return
		}
		req := &ph.reqs[ph.schedule[i%int64(len(ph.schedule))]]
		o = outcome{intended: intended, sent: time.Now()}
		n := ph.inflight.Add(1)
		if o.sent.Sub(intended) > ph.maxLag {
			// Late. If the slot was already overdue when this connection
			// came free and every other connection is busy with a request,
			// there was no connection for it; otherwise a connection was
			// free and the generator did not get the CPU in time.
			if claimed.Sub(intended) > ph.maxLag && n >= ph.conns {
				o.lateConn = true
			} else {
				o.lateCPU = true
			}
		}
		if n > ph.maxFlight.Load() {
			ph.maxFlight.Store(n) // racy max: good enough for a report
		}
		status, err := ph.do(ctx, w, req, o.sent.Add(ph.timeout))
		ph.inflight.Add(-1)
		o.done = time.Now()
		if err != nil && ctx.Err() != nil {
			return // aborted by cancellation: not a result
		}
		switch {
		case err != nil:
			o.kind, o.err = classify(err), err // no status: a broken response has no latency
		default:
			o.status, o.kind = status, statusKind(status)
		}
		sh.record(&o)
	}
}

// do sends req on worker w's connection, dialling if needed. A request
// that fails before any response byte on a reused connection (the server
// closed it while idle) is retried once on a fresh connection.
func (ph *phase) do(ctx context.Context, w int, req *request, deadline time.Time) (int, error) {
	for attempt := 0; ; attempt++ {
		c := ph.pool.get(w, req.endpoint)
		if c == nil {
			var err error
			if c, err = ph.pool.dial(ctx, w, req.endpoint, deadline); err != nil {
				return 0, err
			}
		}
		status, keepAlive, started, err := c.roundTrip(req, deadline)
		if err == nil {
			c.reused = true
			if !keepAlive {
				ph.pool.drop(w, req.endpoint)
			}
			return status, nil
		}
		reused := c.reused
		ph.pool.drop(w, req.endpoint)
		if k := classify(err); attempt == 0 && reused && !started && (k == KindClosed || k == KindReset) && ctx.Err() == nil {
			continue
		}
		return status, err
	}
}
