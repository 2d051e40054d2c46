package experiment

import (
	"math"
	"sort"
	"sync"
	"time"

	"github.com/switchyard/switchyard/load"
)

// bar is a latency bucket: Count responses of at most Micros µs.
type bar struct{ micros, count int64 }

// point is one interval of the experiment's load.
type point struct {
	t                float64 // end of the interval, seconds since the method phase began
	requests, errors int64
	p50, p99         float64 // ms
	bars             []bar   // sparse latency distribution; nil once older than every window
}

// traffic records the load's intervals as they end, for SLI probes and
// the timeline. Safe for concurrent use.
type traffic struct {
	mu      sync.Mutex
	started time.Time // the method phase's start
	points  []point
	keep    time.Duration // how much latency detail to keep (the largest window)
	loadAt  float64       // when the load began, seconds since started
	running bool
}

func newTraffic(started time.Time, keep time.Duration) *traffic {
	return &traffic{started: started, keep: keep}
}

// begin marks the start of the load.
func (tr *traffic) begin(now time.Time) {
	tr.mu.Lock()
	tr.loadAt, tr.running = now.Sub(tr.started).Seconds(), true
	tr.mu.Unlock()
}

// end marks the end of the load.
func (tr *traffic) end() {
	tr.mu.Lock()
	tr.running = false
	tr.mu.Unlock()
}

// record is the load's Progress callback.
func (tr *traffic) record(p load.Progress) {
	pt := point{requests: p.Interval.Requests, errors: p.Interval.Errors, p50: p.Interval.P50, p99: p.Interval.P99}
	if h := p.Latencies; h != nil && h.TotalCount() > 0 {
		for _, b := range h.Distribution() {
			if b.Count > 0 {
				pt.bars = append(pt.bars, bar{micros: b.To, count: b.Count})
			}
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	pt.t = tr.loadAt + p.Elapsed.Seconds()
	tr.points = append(tr.points, pt)
	for i := range tr.points {
		if tr.points[i].bars != nil && pt.t-tr.points[i].t > tr.keep.Seconds()+1 {
			tr.points[i].bars = nil
		}
	}
}

// windowStats are the load's numbers over a window.
type windowStats struct {
	requests, errors int64
	latencyMs        float64 // at the percentile asked for; NaN without responses
	// covered is true when the load has run for the whole window, so that
	// an empty window means the system answered nothing.
	covered bool
	// measured is false before the load's first interval.
	measured bool
}

// window returns the last w of traffic (by the latest interval's end),
// with the latency at percentile pct.
func (tr *traffic) window(w time.Duration, pct float64) windowStats {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var ws windowStats
	if len(tr.points) == 0 {
		return ws
	}
	ws.measured = true
	latest := tr.points[len(tr.points)-1].t
	from := latest - w.Seconds() + 0.001
	ws.covered = latest-tr.loadAt >= w.Seconds()-0.5
	var bars []bar
	for i := len(tr.points) - 1; i >= 0 && tr.points[i].t > from; i-- {
		p := tr.points[i]
		ws.requests += p.requests
		ws.errors += p.errors
		bars = append(bars, p.bars...)
	}
	ws.latencyMs = quantile(bars, pct)
	return ws
}

// quantile returns the latency (ms) at percentile pct of the bars, NaN
// when they are empty.
func quantile(bars []bar, pct float64) float64 {
	var total int64
	for _, b := range bars {
		total += b.count
	}
	if total == 0 {
		return math.NaN()
	}
	sort.Slice(bars, func(i, j int) bool { return bars[i].micros < bars[j].micros })
	want := int64(math.Ceil(pct / 100 * float64(total)))
	if want < 1 {
		want = 1
	}
	var seen int64
	for _, b := range bars {
		seen += b.count
		if seen >= want {
			return float64(b.micros) / 1000
		}
	}
	return float64(bars[len(bars)-1].micros) / 1000
}

// timeline returns the intervals so far.
func (tr *traffic) timeline() []TimelinePoint {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]TimelinePoint, len(tr.points))
	for i, p := range tr.points {
		rate := 0.0
		if p.requests > 0 {
			rate = float64(p.errors) / float64(p.requests)
		}
		out[i] = TimelinePoint{T: round3(p.t), Requests: p.requests, Errors: p.errors, ErrorRate: round3(rate), P50: p.p50, P99: p.p99}
	}
	return out
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
