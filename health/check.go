// Package health decides which targets are fit to receive traffic: active
// checks (Checker) and passive outlier detection from live responses
// (Outlier). Heartbeats sent by the services themselves live in the
// service registry (kit/discovery/registry).
package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/upstream"
)

// Defaults applied by CheckConfig.WithDefaults to zero fields.
const (
	DefaultInterval       = 10 * time.Second
	DefaultTimeout        = 2 * time.Second
	DefaultHealthyAfter   = 2
	DefaultUnhealthyAfter = 2
	// DefaultExpectStatusMin and DefaultExpectStatusMax bound the status
	// codes of a passing HTTP check.
	DefaultExpectStatusMin = 200
	DefaultExpectStatusMax = 399
)

// maxBodyDrain is how much of a check response body is read so the
// connection can be reused.
const maxBodyDrain = 4 << 10

// CheckConfig configures active health checks of a pool. The zero value of
// every field means its default.
type CheckConfig struct {
	// Path is the HTTP path requested with GET, starting with "/" (it may
	// carry a query). Empty means a TCP check: the target is healthy when a
	// connection to it opens.
	Path string `yaml:"path"`
	// Interval is the time between the end of one check of a target and the
	// start of the next, plus up to 10% random jitter so checks of many
	// targets spread out. Positive. Default 10s.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one check (connect, request and response headers).
	// Positive and at most Interval. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// HealthyAfter is the number of consecutive passing checks that mark an
	// unhealthy target healthy. At least 1. Default 2.
	HealthyAfter int `yaml:"healthy_after"`
	// UnhealthyAfter is the number of consecutive failing checks that mark a
	// healthy target unhealthy. At least 1. Default 2.
	UnhealthyAfter int `yaml:"unhealthy_after"`
	// ExpectStatus is the inclusive range of HTTP status codes that pass,
	// within 100-599. Default [200, 399]. Redirects are not followed.
	ExpectStatus [2]int `yaml:"expect_status"`
	// Host is the Host header of HTTP checks. Default: the target's address.
	Host string `yaml:"host"`
}

// WithDefaults returns c with every zero field set to its default.
func (c CheckConfig) WithDefaults() CheckConfig {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = min(DefaultTimeout, c.Interval)
	}
	if c.HealthyAfter == 0 {
		c.HealthyAfter = DefaultHealthyAfter
	}
	if c.UnhealthyAfter == 0 {
		c.UnhealthyAfter = DefaultUnhealthyAfter
	}
	if c.ExpectStatus == [2]int{} {
		c.ExpectStatus = [2]int{DefaultExpectStatusMin, DefaultExpectStatusMax}
	}
	return c
}

// Validate reports every problem of c (after defaults) at once, joined with
// errors.Join. It does not modify c.
func (c CheckConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
		errs = append(errs, config.Fieldf("path", "%q: expected a path starting with \"/\" (or empty for a tcp check)", c.Path))
	}
	if c.Interval <= 0 {
		errs = append(errs, config.Fieldf("interval", "%v: expected a positive duration", c.Interval))
	}
	if c.Timeout <= 0 || c.Timeout > c.Interval {
		errs = append(errs, config.Fieldf("timeout", "%v: expected a positive duration at most the interval %v", c.Timeout, c.Interval))
	}
	if c.HealthyAfter < 1 {
		errs = append(errs, config.Fieldf("healthy_after", "%d: expected at least 1 check", c.HealthyAfter))
	}
	if c.UnhealthyAfter < 1 {
		errs = append(errs, config.Fieldf("unhealthy_after", "%d: expected at least 1 check", c.UnhealthyAfter))
	}
	if lo, hi := c.ExpectStatus[0], c.ExpectStatus[1]; lo < 100 || hi > 599 || lo > hi {
		errs = append(errs, config.Fieldf("expect_status", "%d-%d: expected a range within 100-599", lo, hi))
	}
	if strings.ContainsAny(c.Host, " \r\n/") {
		errs = append(errs, config.Fieldf("host", "%q: expected a host name without spaces or slashes", c.Host))
	}
	return errors.Join(errs...)
}

// CheckerOptions are the dependencies of a Checker.
type CheckerOptions struct {
	// Client sends HTTP checks. Its Timeout is ignored (CheckConfig.Timeout
	// applies) and it should not follow redirects. Default: a client with
	// its own transport that does not follow redirects; its idle
	// connections are closed when Run returns.
	Client *http.Client
	// TLS, when set (and Client is not), makes HTTP checks HTTPS with
	// this client config, as the upstream's traffic is. Default: HTTP.
	TLS *tls.Config
	// Dialer opens TCP checks. Default: a zero net.Dialer.
	Dialer *net.Dialer
	// Logger receives a line for every health change (Info) and every
	// failing check (Debug). Default: discard.
	Logger *slog.Logger
	// OnChange, if set, is called after a target's health flips (for
	// metrics, logs, closing a circuit breaker). It runs on the target's
	// check goroutine, so it delays that target's next check only.
	OnChange func(t *upstream.Target, healthy bool)
	// OnCheck, if set, is called after every completed check of a target
	// with the check's duration (for a passing check, the probe's round
	// trip: TCP connect, or HTTP request to response headers) and its
	// error. It runs on the target's check goroutine. The DNS GSLB uses it
	// to steer by measured latency.
	OnCheck func(t *upstream.Target, rtt time.Duration, err error)
	// Path, if set, gives a target its own HTTP check path (it may carry
	// a query), used instead of CheckConfig.Path; "" keeps
	// CheckConfig.Path. The gateway sets it from a discovered
	// instance's health_url. Only HTTP checks read it (a TCP check stays
	// a TCP check), and the check still goes to the target's address: a
	// path that does not start with "/" or would name another host fails
	// the check rather than sending it anywhere else.
	Path func(t *upstream.Target) string
}

// Checker actively checks the health of a fixed set of targets and records
// the result with Target.SetHealthy. Create it with NewChecker and start it
// with Run.
//
// A target is assumed healthy until proven otherwise: NewTarget starts
// healthy, so a new target takes traffic at once and is marked unhealthy
// only after UnhealthyAfter consecutive failed checks. A target that is
// already unhealthy when Run starts needs HealthyAfter passing checks.
type Checker struct {
	cfg       CheckConfig
	targets   []*upstream.Target
	client    *http.Client
	ownClient bool
	scheme    string // of HTTP checks: http:// (default) or https://
	dialer    *net.Dialer
	log       *slog.Logger
	onChange  func(*upstream.Target, bool)
	onCheck   func(*upstream.Target, time.Duration, error)
	pathOf    func(*upstream.Target) string
}

// NewChecker applies defaults to cfg, validates it and returns a Checker of
// targets. The slice is not copied; the caller must not modify it.
func NewChecker(cfg CheckConfig, targets []*upstream.Target, opts CheckerOptions) (*Checker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Checker{
		cfg:      cfg,
		targets:  targets,
		client:   opts.Client,
		dialer:   opts.Dialer,
		log:      opts.Logger,
		onChange: opts.OnChange,
		onCheck:  opts.OnCheck,
		pathOf:   opts.Path,
		scheme:   "http://",
	}
	if c.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // checks go straight to the target
		if opts.TLS != nil {
			tr.TLSClientConfig = opts.TLS.Clone()
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
			c.scheme = "https://"
		}
		c.client = &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		c.ownClient = true
	}
	if c.dialer == nil {
		c.dialer = &net.Dialer{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Run checks every target on its own goroutine, the first time at once and
// then every Interval (plus jitter), until ctx is done. It returns ctx's
// error after all its goroutines have exited. Run must not be called twice
// concurrently on one Checker.
func (c *Checker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, t := range c.targets {
		wg.Go(func() { c.loop(ctx, t) })
	}
	wg.Wait()
	<-ctx.Done() // loops end only on cancellation; this covers an empty pool
	if c.ownClient {
		c.client.CloseIdleConnections()
	}
	return ctx.Err()
}

// loop checks one target until ctx is done. The consecutive counters are
// local: only this goroutine checks t.
func (c *Checker) loop(ctx context.Context, t *upstream.Target) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	passes, fails := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		began := time.Now()
		err := c.Check(ctx, t)
		if ctx.Err() != nil {
			return // the check was cut short by shutdown, not by the target
		}
		if c.onCheck != nil {
			c.onCheck(t, time.Since(began), err)
		}
		if err == nil {
			passes, fails = passes+1, 0
			if passes >= c.cfg.HealthyAfter {
				c.set(t, true, nil)
			}
		} else {
			passes, fails = 0, fails+1
			c.log.Debug("health check failed", "target", t.Address, "consecutive", fails, "err", err)
			if fails >= c.cfg.UnhealthyAfter {
				c.set(t, false, err)
			}
		}
		timer.Reset(c.cfg.Interval + rand.N(c.cfg.Interval/10+1))
	}
}

func (c *Checker) set(t *upstream.Target, healthy bool, err error) {
	if !t.SetHealthy(healthy) {
		return
	}
	if healthy {
		c.log.Info("target healthy", "target", t.Address)
	} else {
		c.log.Info("target unhealthy", "target", t.Address, "err", err)
	}
	if c.onChange != nil {
		c.onChange(t, healthy)
	}
}

// Check runs one check of t now, bounded by Timeout, and returns nil when
// it passes. It does not change t. Useful for an admin "check now".
func (c *Checker) Check(ctx context.Context, t *upstream.Target) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if c.cfg.Path == "" {
		conn, err := c.dialer.DialContext(ctx, "tcp", t.Address)
		if err != nil {
			return fmt.Errorf("tcp check of %q: %w", t.Address, err)
		}
		return conn.Close()
	}
	path, own := c.cfg.Path, false
	if c.pathOf != nil {
		if p := c.pathOf(t); p != "" {
			if !strings.HasPrefix(p, "/") {
				return fmt.Errorf("http check of %q: path %q: expected a path starting with \"/\"", t.Address, p)
			}
			path, own = p, true
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.scheme+t.Address+path, nil)
	if err != nil {
		return fmt.Errorf("http check of %q: building request: %w", t.Address, err)
	}
	if own && req.URL.Host != t.Address { // a target's own path cannot move the check elsewhere
		return fmt.Errorf("http check of %q: path %q names host %q", t.Address, path, req.URL.Host)
	}
	if c.cfg.Host != "" {
		req.Host = c.cfg.Host
	}
	req.Header.Set("User-Agent", "switchyard-health-check")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("http check of %q: %w", t.Address, err)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxBodyDrain)
	resp.Body.Close()
	if lo, hi := c.cfg.ExpectStatus[0], c.cfg.ExpectStatus[1]; resp.StatusCode < lo || resp.StatusCode > hi {
		return &StatusError{Address: t.Address, Code: resp.StatusCode}
	}
	return nil
}

// StatusError is the error of an HTTP check answered with a status outside
// CheckConfig.ExpectStatus.
type StatusError struct {
	// Address is the target checked.
	Address string
	// Code is the status received.
	Code int
}

// Error describes the failed check.
func (e *StatusError) Error() string {
	return fmt.Sprintf("http check of %q: unexpected status %d", e.Address, e.Code)
}
