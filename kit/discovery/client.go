package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNotRegistered is returned by Heartbeat, SetState and Deregister when
// the registry does not know the instance (it expired, or the registry
// lost it): register again.
var ErrNotRegistered = errors.New("instance not registered")

// ErrLeaseMismatch is returned when the registry holds the instance
// live under another lease than the client presented (another process
// registered that id and still renews it).
var ErrLeaseMismatch = errors.New("instance registered under another lease")

// Client talks to a registry over HTTP. Safe for concurrent use.
type Client struct {
	base  string
	hc    *http.Client
	token string
	lease string
}

// WithLease returns a copy of c that presents lease (Instance.Lease of a
// registration's answer) with every request: what heartbeats, state
// changes, deregistration and re-registration of that instance need.
// Lease (Register) does it itself.
func (c *Client) WithLease(lease string) *Client {
	cp := *c
	cp.lease = lease
	return &cp
}

// WithToken returns a copy of c that sends token as a bearer token with
// every request (a registry with registry.Access).
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// NewClient returns a client of the registry at registryURL
// (http://host:port). hc may be nil (a client with its own transport).
func NewClient(registryURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(registryURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("registry URL %q: expected http(s)://host:port", clip(registryURL))
	}
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		hc = &http.Client{Transport: tr}
	}
	return &Client{base: strings.TrimSuffix(u.String(), "/"), hc: hc}, nil
}

// APIError is an error answer of the registry.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is the registry's stable reason: invalid, not_registered,
	// registry_full, busy, closed, body_too_large, not_found.
	Code string
	// Msg is the registry's message.
	Msg string
}

// Error implements error.
func (e *APIError) Error() string {
	return fmt.Sprintf("registry answered %d %s: %s", e.Status, e.Code, e.Msg)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.lease != "" {
		req.Header.Set("X-Switchyard-Lease", c.lease)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("registry %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("registry %s %s: reading answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		_ = json.Unmarshal(data, &eb)
		ae := &APIError{Status: resp.StatusCode, Code: eb.Code, Msg: eb.Error}
		if resp.StatusCode == http.StatusNotFound && eb.Code == "not_registered" {
			return nil, fmt.Errorf("%w: %w", ErrNotRegistered, ae)
		}
		if resp.StatusCode == http.StatusConflict && eb.Code == "lease_mismatch" {
			return nil, fmt.Errorf("%w: %w", ErrLeaseMismatch, ae)
		}
		return nil, ae
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("registry %s %s: decoding answer: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

func instancePath(service, id string) string {
	return "/v1/services/" + url.PathEscape(service) + "/instances/" + url.PathEscape(id)
}

// RegisterOnce registers (or replaces) one instance without heartbeats;
// most services want Register. The answer's Lease is what heartbeats and
// deregistration of the instance present (WithLease); replacing a live
// instance needs the client to present its lease, else
// ErrLeaseMismatch.
func (c *Client) RegisterOnce(ctx context.Context, reg Registration) (Instance, error) {
	reg = reg.WithDefaults()
	if err := reg.Validate(); err != nil {
		return Instance{}, err
	}
	var in Instance
	_, err := c.do(ctx, http.MethodPut, instancePath(reg.Service, reg.ID), reg, &in)
	return in, err
}

// Heartbeat renews an instance's TTL.
func (c *Client) Heartbeat(ctx context.Context, service, id string) (Instance, error) {
	var in Instance
	_, err := c.do(ctx, http.MethodPut, instancePath(service, id)+"/heartbeat", nil, &in)
	return in, err
}

// SetState drains (StateDraining) or undrains (StateUp) an instance.
func (c *Client) SetState(ctx context.Context, service, id string, state State) (Instance, error) {
	var in Instance
	_, err := c.do(ctx, http.MethodPut, instancePath(service, id)+"/state", StateRequest{State: state}, &in)
	return in, err
}

// Deregister removes an instance.
func (c *Client) Deregister(ctx context.Context, service, id string) error {
	_, err := c.do(ctx, http.MethodDelete, instancePath(service, id), nil, nil)
	return err
}

// Service returns a service's instances. With wait > 0 it is a long-poll:
// the registry answers when the service's index differs from index (the
// index of the snapshot the caller holds) or after wait, whichever is
// first.
func (c *Client) Service(ctx context.Context, service string, index uint64, wait time.Duration) (ServiceSnapshot, error) {
	if err := ValidName(service); err != nil {
		return ServiceSnapshot{}, err
	}
	path := "/v1/services/" + url.PathEscape(service)
	if wait > 0 {
		path += "?index=" + strconv.FormatUint(index, 10) + "&wait=" + wait.String()
	}
	var snap ServiceSnapshot
	_, err := c.do(ctx, http.MethodGet, path, nil, &snap)
	return snap, err
}

// Lease is a registered instance kept alive by background heartbeats.
// Close deregisters it.
type Lease struct {
	base   *Client // without a lease
	reg    Registration
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	c       *Client // base with the instance's current lease
	lastErr error
	state   State
}

func (l *Lease) client() *Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c
}

// registerOnce registers the instance again (presenting the current
// lease, which the registry keeps while the instance lives) and keeps
// the lease it answers.
func (l *Lease) registerOnce(ctx context.Context) error {
	in, err := l.client().RegisterOnce(ctx, l.reg)
	if err == nil && in.Lease != "" {
		l.mu.Lock()
		l.c = l.base.WithLease(in.Lease)
		l.mu.Unlock()
	}
	return err
}

// Register registers reg and renews it in the background every third of
// its TTL until Close. A heartbeat the registry refuses as unknown (the
// instance expired, or the registry lost its state) registers it again;
// failed heartbeats are retried at the same pace.
//
// When the id is live under another lease (ErrLeaseMismatch: typically
// this process's previous run, which crashed without deregistering),
// Register tries again until that registration's TTL could have run out
// (reg's TTL plus a second) or ctx ends, and then returns the error.
func (c *Client) Register(ctx context.Context, reg Registration) (*Lease, error) {
	reg = reg.WithDefaults()
	c = c.WithLease("")
	l := &Lease{base: c, c: c, reg: reg, done: make(chan struct{}), state: StateUp}
	deadline := time.Now().Add(reg.TTL.Std() + time.Second)
	for {
		err := l.registerOnce(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrLeaseMismatch) || time.Now().After(deadline) {
			return nil, err
		}
		t := time.NewTimer(jittered(min(reg.TTL.Std()/4, time.Second)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
		case <-t.C:
		}
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	go l.loop(lctx)
	return l, nil
}

// Registration returns what the lease registered.
func (l *Lease) Registration() Registration { return l.reg }

// Err returns the last heartbeat error, nil after a successful one.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

func (l *Lease) loop(ctx context.Context) {
	defer close(l.done)
	every := l.reg.TTL.Std() / 3
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A slow heartbeat may take up to the TTL: the instance is alive
		// until then anyway, and giving up sooner only loses the renewal.
		hctx, cancel := context.WithTimeout(ctx, l.reg.TTL.Std())
		_, err := l.client().Heartbeat(hctx, l.reg.Service, l.reg.ID)
		if errors.Is(err, ErrNotRegistered) {
			err = l.registerOnce(hctx)
			l.mu.Lock()
			state := l.state
			l.mu.Unlock()
			if err == nil && state == StateDraining {
				_, err = l.client().SetState(hctx, l.reg.Service, l.reg.ID, state)
			}
		}
		cancel()
		l.mu.Lock()
		l.lastErr = err
		l.mu.Unlock()
		t.Reset(every)
	}
}

// Drain marks the instance draining: callers stop sending it new requests
// while it finishes what it has. Heartbeats continue.
func (l *Lease) Drain(ctx context.Context) error {
	l.mu.Lock()
	l.state = StateDraining
	l.mu.Unlock()
	_, err := l.client().SetState(ctx, l.reg.Service, l.reg.ID, StateDraining)
	return err
}

// Close stops the heartbeats and deregisters the instance.
func (l *Lease) Close(ctx context.Context) error {
	l.cancel()
	<-l.done
	err := l.client().Deregister(ctx, l.reg.Service, l.reg.ID)
	if errors.Is(err, ErrNotRegistered) {
		return nil
	}
	return err
}

// jittered returns d plus or minus up to 20%.
func jittered(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5*2+1)) - d/5
}

// Abandon stops the heartbeats without deregistering: the registry
// removes the instance when its TTL runs out, as after a crash. For tests
// and for handing an instance over to another process.
func (l *Lease) Abandon() {
	l.cancel()
	<-l.done
}
