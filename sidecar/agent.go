package sidecar

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/kit/discovery"
)

// agent checks the app's health and keeps its registration while the app
// is healthy: registered (with heartbeats) at the first passing check
// (an app still starting needs no more),
// deregistered after UnhealthyAfter consecutive failures, registered
// again after HealthyAfter consecutive passes.
type agent struct {
	client *discovery.Client
	reg    discovery.Registration
	app    string
	check  health.CheckConfig // with defaults
	hc     *http.Client
	log    *slog.Logger
	onFlip func(healthy bool)
	onReg  func(registered bool)

	mu      sync.Mutex
	lease   *discovery.Lease
	healthy bool
	wasUp   bool // the app has been healthy once
	lastErr string
}

// status is what /sidecar/status reports about the app.
type status struct {
	Service    string `json:"service"`
	ID         string `json:"id"`
	Address    string `json:"address"`
	App        string `json:"app"`
	AppHealthy bool   `json:"app_healthy"`
	Registered bool   `json:"registered"`
	LastError  string `json:"last_error,omitempty"`
}

func (a *agent) status() status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return status{Service: a.reg.Service, ID: a.reg.ID, Address: a.reg.Address, App: a.app,
		AppHealthy: a.healthy, Registered: a.lease != nil, LastError: a.lastErr}
}

// run checks the app every interval (plus up to 10% jitter) until ctx
// ends, then deregisters it.
func (a *agent) run(ctx context.Context) {
	passes, fails := 0, 0
	for {
		err := a.probe(ctx)
		if ctx.Err() != nil {
			break
		}
		a.mu.Lock()
		starting, healthy := !a.wasUp, a.healthy
		a.mu.Unlock()
		if err == nil {
			passes, fails = passes+1, 0
			if !healthy && (starting || passes >= a.check.HealthyAfter) {
				a.setHealthy(true, "")
			}
		} else {
			passes, fails = 0, fails+1
			if starting && fails == 1 {
				// Said once at Info: otherwise a sidecar whose app is not
				// up yet stays silent until the next check, up to an
				// interval (10s by default) later.
				a.log.Info("app not healthy yet: registering at the first passing check", "service", a.reg.Service, "app", a.app,
					"next_check_in", a.check.Interval.String(), "error", err.Error())
			} else {
				a.log.Debug("app health check failed", "app", a.app, "error", err.Error())
			}
			if healthy && fails >= a.check.UnhealthyAfter {
				a.setHealthy(false, err.Error())
			} else if !healthy {
				a.mu.Lock()
				a.lastErr = "app health check: " + err.Error()
				a.mu.Unlock()
			}
		}
		if a.isHealthy() && !a.isRegistered() {
			a.register(ctx) // first time, or again after a failed attempt
		}
		wait := a.check.Interval + rand.N(a.check.Interval/10+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	a.deregister(context.WithoutCancel(ctx))
	a.hc.CloseIdleConnections()
}

func (a *agent) isHealthy() bool    { a.mu.Lock(); defer a.mu.Unlock(); return a.healthy }
func (a *agent) isRegistered() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.lease != nil }

func (a *agent) setHealthy(healthy bool, reason string) {
	a.mu.Lock()
	a.healthy = healthy
	a.wasUp = a.wasUp || healthy
	if reason != "" {
		a.lastErr = "app health check: " + reason
	} else {
		a.lastErr = ""
	}
	a.mu.Unlock()
	if healthy {
		a.log.Info("app healthy", "service", a.reg.Service, "app", a.app)
	} else {
		a.log.Warn("app unhealthy: deregistering", "service", a.reg.Service, "app", a.app, "error", reason)
		a.deregister(context.Background())
	}
	if a.onFlip != nil {
		a.onFlip(healthy)
	}
}

// register registers the instance with heartbeats; a failure is retried
// at the next check.
func (a *agent) register(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, a.reg.TTL.Std())
	defer cancel()
	lease, err := a.client.Register(rctx, a.reg)
	a.mu.Lock()
	if err != nil {
		a.lastErr = "registering: " + err.Error()
	} else {
		a.lease = lease
	}
	a.mu.Unlock()
	if err != nil {
		a.log.Error("registering the app", "service", a.reg.Service, "id", a.reg.ID, "error", err.Error())
		return
	}
	a.log.Info("registered", "service", a.reg.Service, "id", a.reg.ID, "address", a.reg.Address, "ttl", a.reg.TTL.String())
	if a.onReg != nil {
		a.onReg(true)
	}
}

// deregister stops the heartbeats and removes the instance; when the
// registry cannot be reached the instance expires within its TTL, since
// nothing renews it any more.
func (a *agent) deregister(ctx context.Context) {
	a.mu.Lock()
	lease := a.lease
	a.lease = nil
	a.mu.Unlock()
	if lease == nil {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := lease.Close(dctx); err != nil {
		a.log.Warn("deregistering: the instance expires within its ttl", "service", a.reg.Service, "id", a.reg.ID, "error", err.Error())
	} else {
		a.log.Info("deregistered", "service", a.reg.Service, "id", a.reg.ID)
	}
	if a.onReg != nil {
		a.onReg(false)
	}
}

// probe runs one check of the app: GET path (status within expect_status)
// or, without a path, a TCP connect.
func (a *agent) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.check.Timeout)
	defer cancel()
	if a.check.Path == "" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", a.app)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.app+a.check.Path, nil)
	if err != nil {
		return err
	}
	if a.check.Host != "" {
		req.Host = a.check.Host
	}
	req.Header.Set("User-Agent", "switchyard-sidecar")
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if lo, hi := a.check.ExpectStatus[0], a.check.ExpectStatus[1]; resp.StatusCode < lo || resp.StatusCode > hi {
		return fmt.Errorf("status %d: expected %d-%d", resp.StatusCode, lo, hi)
	}
	return nil
}
