package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestBackoffSequences(t *testing.T) {
	tests := []struct {
		name string
		b    Backoff
		want []time.Duration // attempts 1, 2, ...
	}{
		{"fixed", Backoff{Kind: Fixed, Base: 10 * ms, Jitter: NoJitter}, []time.Duration{10 * ms, 10 * ms, 10 * ms, 10 * ms}},
		{"incremental", Backoff{Kind: Incremental, Base: 10 * ms, Jitter: NoJitter}, []time.Duration{10 * ms, 20 * ms, 30 * ms, 40 * ms}},
		{"incremental capped", Backoff{Kind: Incremental, Base: 10 * ms, Cap: 25 * ms, Jitter: NoJitter}, []time.Duration{10 * ms, 20 * ms, 25 * ms, 25 * ms}},
		{"exponential", Backoff{Kind: Exponential, Base: 10 * ms, Jitter: NoJitter}, []time.Duration{10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms}},
		{"exponential capped", Backoff{Kind: Exponential, Base: 10 * ms, Cap: 50 * ms, Jitter: NoJitter}, []time.Duration{10 * ms, 20 * ms, 40 * ms, 50 * ms, 50 * ms}},
		{"fixed above cap", Backoff{Kind: Fixed, Base: 10 * ms, Cap: 5 * ms, Jitter: NoJitter}, []time.Duration{5 * ms, 5 * ms}},
		{"zero base", Backoff{Kind: Exponential, Jitter: NoJitter}, []time.Duration{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.want {
				if got := tt.b.Delay(i+1, nil); got != want {
					t.Errorf("Delay(%d) = %v, want %v", i+1, got, want)
				}
			}
			if got := tt.b.Delay(0, nil); got != 0 {
				t.Errorf("Delay(0) = %v, want 0", got)
			}
		})
	}
}

func TestBackoffNoOverflow(t *testing.T) {
	for _, b := range []Backoff{
		{Kind: Exponential, Base: time.Hour, Jitter: NoJitter},
		{Kind: Incremental, Base: time.Duration(1) << 62, Jitter: NoJitter},
	} {
		prev := time.Duration(0)
		for attempt := 1; attempt < 200; attempt++ {
			d := b.Delay(attempt, nil)
			if d < prev {
				t.Fatalf("%v: Delay(%d) = %v < Delay(%d) = %v (overflow)", b.Kind, attempt, d, attempt-1, prev)
			}
			prev = d
		}
	}
	b := Backoff{Kind: Exponential, Base: time.Second, Cap: time.Minute, Jitter: NoJitter}
	if got := b.Delay(1000, nil); got != time.Minute {
		t.Errorf("Delay(1000) = %v, want the cap", got)
	}
}

func TestJitterBounds(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	for _, tt := range []struct {
		jitter Jitter
		lo, hi time.Duration // [lo, hi)
	}{
		{FullJitter, 0, 80 * ms},
		{EqualJitter, 40 * ms, 80 * ms},
	} {
		t.Run(tt.jitter.String(), func(t *testing.T) {
			b := Backoff{Kind: Exponential, Base: 10 * ms, Cap: 80 * ms, Jitter: tt.jitter}
			var total time.Duration
			minSeen, maxSeen := time.Duration(1<<62), time.Duration(0)
			for range n {
				d := b.Delay(5, rnd) // 160ms capped to 80ms
				if d < tt.lo || d >= tt.hi {
					t.Fatalf("delay %v outside [%v, %v)", d, tt.lo, tt.hi)
				}
				total += d
				minSeen, maxSeen = min(minSeen, d), max(maxSeen, d)
			}
			mean := total / n
			wantMean := (tt.lo + tt.hi) / 2
			if diff := mean - wantMean; diff < -ms || diff > ms {
				t.Errorf("mean %v, want about %v (uniform)", mean, wantMean)
			}
			span := tt.hi - tt.lo
			if minSeen > tt.lo+span/100 || maxSeen < tt.hi-span/100 {
				t.Errorf("samples span [%v, %v], want close to [%v, %v)", minSeen, maxSeen, tt.lo, tt.hi)
			}
		})
	}
	// A nil Rand uses the shared generator.
	b := Backoff{Base: 10 * ms, Jitter: FullJitter}
	for range 1000 {
		if d := b.Delay(1, nil); d < 0 || d >= 10*ms {
			t.Fatalf("nil rand: delay %v outside [0, 10ms)", d)
		}
	}
}

func TestParseKindJitter(t *testing.T) {
	for _, k := range []Kind{Fixed, Incremental, Exponential} {
		if got, err := ParseKind(k.String()); err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	for _, j := range []Jitter{NoJitter, FullJitter, EqualJitter} {
		if got, err := ParseJitter(j.String()); err != nil || got != j {
			t.Errorf("ParseJitter(%q) = %v, %v", j.String(), got, err)
		}
	}
	if k, err := ParseKind(""); err != nil || k != Exponential {
		t.Errorf(`ParseKind("") = %v, %v; want exponential`, k, err)
	}
	if j, err := ParseJitter(""); err != nil || j != FullJitter {
		t.Errorf(`ParseJitter("") = %v, %v; want full`, j, err)
	}
	if _, err := ParseKind("Exponential"); err == nil || !strings.Contains(err.Error(), `"Exponential"`) {
		t.Errorf("ParseKind(Exponential) error = %v", err)
	}
	if _, err := ParseJitter("half"); err == nil || !strings.Contains(err.Error(), `"half"`) {
		t.Errorf("ParseJitter(half) error = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	good := Config{Attempts: 3, Backoff: "fixed", Base: ms, Cap: ms, Jitter: "none",
		On: []string{"connect_failure", "timeout", "reset", "5xx", "gateway_error", "429"}, Budget: 1, MinRetriesPerSecond: -1}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"unknown condition", Config{On: []string{"5xx", "connect-failure"}},
			[]string{`retry condition "connect-failure"`, validConditions}},
		{"code out of range", Config{On: []string{"600", "99"}},
			[]string{`retry condition "600": expected a status code 100-599`, `retry condition "99"`}},
		{"attempts", Config{Attempts: 11}, []string{"attempts: 11"}},
		{"negative attempts", Config{Attempts: -1}, []string{"attempts: -1"}},
		{"kind and jitter", Config{Backoff: "linear", Jitter: "half"}, []string{`"linear"`, `"half"`}},
		{"base and cap", Config{Base: -ms}, []string{"base: -1ms"}},
		{"cap below base", Config{Base: 10 * ms, Cap: ms}, []string{"cap: 1ms: expected at least the base 10ms"}},
		{"budget", Config{Budget: 1.5}, []string{"budget: 150%"}},
		{"min retries", Config{MinRetriesPerSecond: -2}, []string{"min_retries_per_second: -2"}},
		{"all at once", Config{Attempts: 11, Budget: -1, On: []string{"x"}},
			[]string{"attempts: 11", "budget: -100%", `retry condition "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := NewPolicy(tt.cfg); err == nil {
				t.Error("NewPolicy accepted it")
			}
		})
	}
}

func TestPolicyConditions(t *testing.T) {
	p, err := NewPolicy(Config{Attempts: 3, On: []string{"gateway_error", "429", "timeout"}})
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[int]bool{200: false, 429: true, 500: false, 502: true, 503: true, 504: true, 505: false, -1: false, 600: false, 1000: false} {
		if got := p.RetryOnStatus(code); got != want {
			t.Errorf("RetryOnStatus(%d) = %v, want %v", code, got, want)
		}
	}
	for kind, want := range map[ErrorKind]bool{Other: false, ConnectFailure: false, Timeout: true, Reset: false, ErrorKind(7): false} {
		if got := p.RetryOnError(kind); got != want {
			t.Errorf("RetryOnError(%v) = %v, want %v", kind, got, want)
		}
	}
	if p.Attempts() != 3 || p.Budget() == nil {
		t.Errorf("Attempts = %d, Budget = %v", p.Attempts(), p.Budget())
	}
	if got := p.Backoff(); got != (Backoff{Kind: Exponential, Base: DefaultBase, Cap: 10 * DefaultBase, Jitter: FullJitter}) {
		t.Errorf("default backoff = %+v", got)
	}

	p, err = NewPolicy(Config{On: []string{"5xx"}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.RetryOnStatus(500) || !p.RetryOnStatus(599) || p.RetryOnStatus(499) {
		t.Error("5xx does not cover exactly 500-599")
	}
	p, err = NewPolicy(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !p.RetryOnError(ConnectFailure) || p.RetryOnError(Timeout) || p.RetryOnStatus(503) || p.Attempts() != 1 {
		t.Error("default policy: want 1 attempt, connect_failure only")
	}
}

func TestSafe(t *testing.T) {
	tests := []struct {
		method       string
		key, reached bool
		want         bool
	}{
		{"GET", false, true, true},
		{"HEAD", false, true, true},
		{"OPTIONS", false, true, true},
		{"TRACE", false, true, true},
		{"PUT", false, true, true},
		{"DELETE", false, true, true},
		{"POST", false, true, false},
		{"PATCH", false, true, false},
		{"CONNECT", false, true, false},
		{"get", false, true, false}, // methods are case-sensitive
		{"POST", true, true, true},
		{"PATCH", true, true, true},
		{"POST", false, false, true},
		{"PATCH", false, false, true},
		{"GET", false, false, true},
		{"POST", true, false, true},
	}
	for _, tt := range tests {
		if got := Safe(tt.method, tt.key, tt.reached); got != tt.want {
			t.Errorf("Safe(%q, key=%v, reached=%v) = %v, want %v", tt.method, tt.key, tt.reached, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name string
		err  error
		want ErrorKind
	}{
		{"nil", nil, Other},
		{"dial refused", dialErr, ConnectFailure},
		{"wrapped dial", fmt.Errorf("dialing backend: %w", dialErr), ConnectFailure},
		{"dial timeout", &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, ConnectFailure},
		{"deadline", context.DeadlineExceeded, Timeout},
		{"read timeout", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, Timeout},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, Reset},
		{"broken pipe", &net.OpError{Op: "write", Err: syscall.EPIPE}, Reset},
		{"eof", fmt.Errorf("reading response: %w", io.EOF), Reset},
		{"cancelled", context.Canceled, Other},
		{"other", errors.New("boom"), Other},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestClassifyTransport checks Classify against the errors a real
// http.Transport returns.
func TestClassifyTransport(t *testing.T) {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	// Connection refused: a port that was just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = client.Get("http://" + addr + "/")
	if got := Classify(err); got != ConnectFailure {
		t.Errorf("refused: Classify(%v) = %v, want connect_failure", err, got)
	}

	// The server closes the connection without answering.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer hang.Close()
	req, _ := http.NewRequest("POST", hang.URL, strings.NewReader("x")) // POST: the transport does not retry it itself
	_, err = client.Do(req)
	if got := Classify(err); got != Reset {
		t.Errorf("closed without response: Classify(%v) = %v, want reset", err, got)
	}

	// Timeout after the request was sent.
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 20*ms)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, "GET", slow.URL, nil)
	_, err = client.Do(req)
	if got := Classify(err); got != Timeout {
		t.Errorf("slow: Classify(%v) = %v, want timeout", err, got)
	}
}

func TestBudgetSteadyTraffic(t *testing.T) {
	b := NewBudget(0.2, 0)
	now := time.Unix(1_700_000_000, 0)
	allowed, wanted := 0, 0
	// 100 requests per second for 60 s, each wanting one retry.
	for sec := range 60 {
		for i := range 100 {
			at := now.Add(time.Duration(sec)*time.Second + time.Duration(i)*10*ms)
			b.Request(at)
			if sec >= 10 { // measure once the window is full
				wanted++
				if b.TryRetry(at) {
					allowed++
				}
			} else {
				b.TryRetry(at)
			}
		}
	}
	ratio := float64(allowed) / float64(wanted)
	if ratio < 0.17 || ratio > 0.23 {
		t.Errorf("steady traffic: %d of %d retries allowed (%.3f), want about 0.2", allowed, wanted, ratio)
	}
}

func TestBudgetStormAndRecovery(t *testing.T) {
	b := NewBudget(0.2, 10)
	now := time.Unix(1_700_000_000, 0)
	for range 1000 {
		b.Request(now)
	}
	allowed := 0
	for range 1000 {
		if b.TryRetry(now) {
			allowed++
		}
	}
	// 0.2 * 1000 + 10/s * 10 s.
	if allowed != 300 {
		t.Errorf("storm: %d retries allowed, want 300", allowed)
	}
	if req, ret := b.Counts(now); req != 1000 || ret != 300 {
		t.Errorf("Counts = %d, %d; want 1000, 300", req, ret)
	}
	// Still inside the window: nothing more.
	if b.TryRetry(now.Add(9 * time.Second)) {
		t.Error("retry allowed 9s later with the window still full")
	}
	// Once the window has slid past the storm, only the floor is left.
	later := now.Add(10 * time.Second)
	allowed = 0
	for range 1000 {
		if b.TryRetry(later) {
			allowed++
		}
	}
	if allowed != 100 {
		t.Errorf("after the window: %d retries allowed, want the floor of 100", allowed)
	}
	// Going back in time (a clock step) does not count future buckets.
	if req, _ := b.Counts(now.Add(-time.Hour)); req != 0 {
		t.Errorf("Counts an hour earlier = %d, want 0", req)
	}
}

func TestBudgetConcurrent(t *testing.T) {
	b := NewBudget(0.2, 0)
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			n := 0
			for i := range 1000 {
				b.Request(now)
				if i%2 == 0 && b.TryRetry(now) {
					n++
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	req, ret := b.Counts(now)
	if req != 8000 || ret != uint64(allowed) {
		t.Errorf("Counts = %d, %d; want 8000, %d", req, ret, allowed)
	}
	if allowed > 1600+8 {
		t.Errorf("%d retries allowed, want at most 1600 + concurrency", allowed)
	}
}

func TestNoAllocations(t *testing.T) {
	b := NewBudget(0.2, 10)
	now := time.Unix(1_700_000_000, 0)
	p, err := NewPolicy(Config{Attempts: 2, On: []string{"5xx", "reset"}})
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 1))
	if n := testing.AllocsPerRun(1000, func() {
		b.Request(now)
		b.TryRetry(now)
		p.RetryOnStatus(503)
		p.RetryOnError(Reset)
		p.Backoff().Delay(2, rnd)
		Safe("POST", false, true)
		now = now.Add(ms)
	}); n != 0 {
		t.Errorf("%v allocs, want 0", n)
	}
}

func BenchmarkBudget(b *testing.B) {
	bud := NewBudget(0.2, 10)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		bud.Request(now)
		bud.TryRetry(now)
	}
}

func BenchmarkBudgetParallel(b *testing.B) {
	bud := NewBudget(0.2, 10)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bud.Request(now)
			bud.TryRetry(now)
		}
	})
}

func BenchmarkDelay(b *testing.B) {
	bo := Backoff{Kind: Exponential, Base: 25 * ms, Cap: 250 * ms, Jitter: FullJitter}
	b.ReportAllocs()
	for b.Loop() {
		bo.Delay(3, nil)
	}
}
