// Package chaos injects faults on purpose, so that retries, timeouts,
// breakers and compensations are seen to work before a real failure tests
// them. This file is the network half: a TCP fault proxy in the manner of
// Toxiproxy, placed between a component and what it talks to, that adds
// latency and jitter, limits bandwidth, closes slowly, resets, blackholes or
// cuts connections, per direction, for a share of connections, switchable
// at runtime through Go or its HTTP API (api.go).
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Direction is which way bytes flow through a fault.
type Direction string

const (
	// Upstream is client to upstream (requests).
	Upstream Direction = "upstream"
	// Downstream is upstream to client (responses).
	Downstream Direction = "downstream"
)

// Kind is a fault type.
type Kind string

const (
	// Latency delays every chunk by Latency ± Jitter.
	Latency Kind = "latency"
	// Bandwidth limits the rate to Rate bytes per second.
	Bandwidth Kind = "bandwidth"
	// SlowClose delays the close of the other side by Delay after one
	// side closed.
	SlowClose Kind = "slow_close"
	// Reset closes the connection with a TCP RST after Bytes bytes (0:
	// at once) in the fault's direction.
	Reset Kind = "reset"
	// Blackhole swallows the direction's bytes: nothing is forwarded and
	// the connection stays open.
	Blackhole Kind = "blackhole"
	// Timeout stops forwarding the direction's data and closes the
	// connection Delay after the first data it stopped (0: never closes;
	// data is dropped until the fault is removed).
	Timeout Kind = "timeout"
)

// Fault is one injected fault. It applies to open connections and new
// ones alike, from their next chunk of data (Reset with Bytes 0 resets new
// connections at once).
type Fault struct {
	Name      string    `json:"name"`
	Kind      Kind      `json:"type"`
	Direction Direction `json:"stream"`
	// Toxicity is the share of connections the fault applies to, in
	// [0, 1]; 0 means 1 (every connection).
	Toxicity float64       `json:"toxicity,omitempty"`
	Latency  time.Duration `json:"latency,omitempty"`
	Jitter   time.Duration `json:"jitter,omitempty"`
	Rate     int64         `json:"rate,omitempty"`  // bytes per second, Bandwidth
	Delay    time.Duration `json:"delay,omitempty"` // SlowClose, Timeout
	Bytes    int64         `json:"bytes,omitempty"` // Reset
}

// Validate reports what is wrong with f, naming the field.
func (f Fault) Validate() error {
	var errs []error
	if f.Name == "" || len(f.Name) > 64 {
		errs = append(errs, fmt.Errorf("name %q: want 1 to 64 characters", f.Name))
	}
	switch f.Direction {
	case Upstream, Downstream:
	default:
		errs = append(errs, fmt.Errorf("stream %q: want upstream or downstream", f.Direction))
	}
	if f.Toxicity < 0 || f.Toxicity > 1 || f.Toxicity != f.Toxicity {
		errs = append(errs, fmt.Errorf("toxicity %v: want a share in [0, 1]", f.Toxicity))
	}
	neg := func(name string, d time.Duration) {
		if d < 0 || d > time.Hour {
			errs = append(errs, fmt.Errorf("%s %s: want 0 to 1h", name, d))
		}
	}
	neg("latency", f.Latency)
	neg("jitter", f.Jitter)
	neg("delay", f.Delay)
	switch f.Kind {
	case Latency:
		if f.Latency == 0 && f.Jitter == 0 {
			errs = append(errs, errors.New("latency: want latency or jitter above 0"))
		}
	case Bandwidth:
		if f.Rate <= 0 {
			errs = append(errs, fmt.Errorf("rate %d: want bytes per second above 0", f.Rate))
		}
	case SlowClose, Timeout, Blackhole:
	case Reset:
		if f.Bytes < 0 {
			errs = append(errs, fmt.Errorf("bytes %d: want 0 or more", f.Bytes))
		}
	default:
		errs = append(errs, fmt.Errorf("type %q: want latency, bandwidth, slow_close, reset, blackhole or timeout", f.Kind))
	}
	return errors.Join(errs...)
}

// ProxyConfig configures a fault proxy.
type ProxyConfig struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`   // host:port; port 0 picks one
	Upstream string `json:"upstream"` // host:port
	// MaxConnections bounds open client connections; 0 means 4096.
	MaxConnections int          `json:"max_connections,omitempty"`
	Log            *slog.Logger `json:"-"`
}

// Proxy forwards TCP connections from its listener to its upstream through
// the faults set on it. Safe for concurrent use.
type Proxy struct {
	cfg ProxyConfig
	ln  net.Listener
	log *slog.Logger

	mu       sync.Mutex
	faults   map[string]Fault
	conns    map[*link]struct{}
	enabled  bool
	gen      atomic.Uint64 // bumped when faults change
	closed   bool
	wg       sync.WaitGroup
	accepted atomic.Int64
}

// Listen starts a proxy on cfg.Listen.
func Listen(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Name == "" {
		return nil, errors.New("chaos: a proxy needs a name")
	}
	if _, _, err := net.SplitHostPort(cfg.Upstream); err != nil {
		return nil, fmt.Errorf("chaos: proxy %s: upstream %q: want host:port", cfg.Name, cfg.Upstream)
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 4096
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("chaos: proxy %s: %w", cfg.Name, err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: cfg, ln: ln, log: log.With("proxy", cfg.Name), faults: map[string]Fault{},
		conns: map[*link]struct{}{}, enabled: true}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Config is the proxy's configuration, with its actual listen address.
func (p *Proxy) Config() ProxyConfig {
	c := p.cfg
	c.Listen = p.Addr()
	c.Log = nil
	return c
}

// SetEnabled turns the proxy on or off; off, it refuses new connections
// (closing them at once) and closes the open ones, like an upstream that
// went away.
func (p *Proxy) SetEnabled(on bool) {
	p.mu.Lock()
	p.enabled = on
	var open []*link
	if !on {
		for l := range p.conns {
			open = append(open, l)
		}
	}
	p.mu.Unlock()
	for _, l := range open {
		l.close()
	}
}

// Enabled reports whether the proxy forwards.
func (p *Proxy) Enabled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enabled
}

// SetFault adds or replaces the fault with f.Name.
func (p *Proxy) SetFault(f Fault) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("fault %q: %w", f.Name, err)
	}
	if f.Toxicity == 0 {
		f.Toxicity = 1
	}
	p.mu.Lock()
	p.faults[f.Name] = f
	p.mu.Unlock()
	p.gen.Add(1)
	return nil
}

// RemoveFault removes a fault; false if there was none of that name.
func (p *Proxy) RemoveFault(name string) bool {
	p.mu.Lock()
	_, ok := p.faults[name]
	delete(p.faults, name)
	p.mu.Unlock()
	p.gen.Add(1)
	return ok
}

// Faults lists the faults set, by name.
func (p *Proxy) Faults() []Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Fault, 0, len(p.faults))
	for _, f := range p.faults {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stats are a proxy's counters.
type Stats struct {
	Accepted int64 `json:"accepted"`
	Open     int   `json:"open"`
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Accepted: p.accepted.Load(), Open: len(p.conns)}
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	open := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		open = append(open, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range open {
		l.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		p.accepted.Add(1)
		p.mu.Lock()
		if p.closed || !p.enabled || len(p.conns) >= p.cfg.MaxConnections {
			p.mu.Unlock()
			c.Close()
			continue
		}
		l := &link{p: p, client: c, done: make(chan struct{})}
		p.conns[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go func() {
			defer p.wg.Done()
			l.run()
			p.mu.Lock()
			delete(p.conns, l)
			p.mu.Unlock()
		}()
	}
}

// link is one client connection and its upstream connection.
type link struct {
	p        *Proxy
	client   net.Conn
	upstream net.Conn
	once     sync.Once
	done     chan struct{}

	timeoutOnce sync.Once
	seed        uint64 // decides which faults of partial toxicity apply
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		if l.upstream != nil {
			l.upstream.Close()
		}
	})
}

// applies reports whether a fault of toxicity t applies to this link, for
// fault f; decided once per link and fault name so a connection either has
// a fault or not.
func (l *link) applies(f Fault) bool {
	if f.Toxicity >= 1 {
		return true
	}
	// Deterministic per link and name: hash the name into the link's seed.
	h := uint64(14695981039346656037)
	for i := 0; i < len(f.Name); i++ {
		h = (h ^ uint64(f.Name[i])) * 1099511628211
	}
	r := rand.New(rand.NewPCG(l.seed^h, h))
	return r.Float64() < f.Toxicity
}

// active returns the faults of dir that apply to this link now.
func (l *link) active(dir Direction) []Fault {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	var out []Fault
	for _, f := range l.p.faults {
		if f.Direction == dir && l.applies(f) {
			out = append(out, f)
		}
	}
	return out
}

func (l *link) run() {
	defer l.close()
	l.seed = rand.Uint64()
	// An immediate reset decides at open.
	for _, dir := range []Direction{Upstream, Downstream} {
		for _, f := range l.active(dir) {
			if f.Kind == Reset && f.Bytes == 0 {
				resetConn(l.client)
				return
			}
		}
	}
	up, err := net.DialTimeout("tcp", l.p.cfg.Upstream, 5*time.Second)
	if err != nil {
		l.p.log.Debug("dialing upstream", "err", err)
		return
	}
	l.p.mu.Lock()
	l.upstream = up
	l.p.mu.Unlock()
	select {
	case <-l.done: // closed while dialing
		up.Close()
		return
	default:
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pump(up, l.client, Upstream) }()
	go func() { defer wg.Done(); l.pump(l.client, up, Downstream) }()
	wg.Wait()
}

// startTimeout closes the link d after the first time a timeout fault
// touched it (d 0: never; the fault only drops data then).
func (l *link) startTimeout(d time.Duration) {
	if d <= 0 {
		return
	}
	l.timeoutOnce.Do(func() {
		go func() {
			if l.wait(d) {
				l.close()
			}
		}()
	})
}

// pump copies src to dst through the faults of dir. When src ends it
// closes dst's write side (after a slow_close delay), and when either
// fails it closes the link.
func (l *link) pump(dst, src net.Conn, dir Direction) {
	buf := make([]byte, 32<<10)
	rng := rand.New(rand.NewPCG(l.seed, uint64(len(dir)))) // jitter, this direction's own
	var sent int64
	gen := ^uint64(0)
	var faults []Fault
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if g := l.p.gen.Load(); g != gen {
				gen, faults = g, l.active(dir)
			}
			chunk := buf[:n]
			forward := true
			for _, f := range faults {
				switch f.Kind {
				case Blackhole:
					forward = false
				case Timeout:
					forward = false
					l.startTimeout(f.Delay)
				case Latency:
					d := f.Latency
					if f.Jitter > 0 {
						d += time.Duration(rng.Int64N(int64(2*f.Jitter+1))) - f.Jitter
					}
					if d > 0 && !l.wait(d) {
						return
					}
				case Reset:
					if sent+int64(len(chunk)) >= f.Bytes {
						if keep := f.Bytes - sent; keep > 0 {
							dst.Write(chunk[:keep])
						}
						resetConn(l.client)
						resetConn(dst)
						l.close()
						return
					}
				}
			}
			if forward {
				for _, f := range faults {
					if f.Kind == Bandwidth {
						if !l.wait(time.Duration(float64(len(chunk)) / float64(f.Rate) * float64(time.Second))) {
							return
						}
					}
				}
				if _, err := dst.Write(chunk); err != nil {
					l.close()
					return
				}
				sent += int64(len(chunk))
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				for _, f := range l.active(dir) {
					if f.Kind == SlowClose && f.Delay > 0 && !l.wait(f.Delay) {
						return
					}
				}
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
					return
				}
			}
			l.close()
			return
		}
	}
}

// wait sleeps d unless the link closes first (false).
func (l *link) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// resetConn closes c with a TCP RST (linger 0) where it can.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// WithTimeout is a helper for tests and experiments: it sets f for d, then
// removes it, unless ctx ends first (it is removed then too).
func (p *Proxy) WithTimeout(ctx context.Context, f Fault, d time.Duration) error {
	if err := p.SetFault(f); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	p.RemoveFault(f.Name)
	return ctx.Err()
}
