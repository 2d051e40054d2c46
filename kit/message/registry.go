package message

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"sync"

	"github.com/switchyard/switchyard/broker"
)

// Driver opens a backend for a URL of its scheme.
type Driver func(ctx context.Context, u *url.URL) (Backend, error)

// The registry is package-level state on purpose, as database/sql's
// drivers: backends register in init so that kit/message never imports
// them and a URL picks one with no code change. It only grows, at init.
var (
	driversMu sync.RWMutex
	drivers   = map[string]Driver{}
)

// Register makes a backend available to Open under scheme ("switchyard",
// "nats"). It panics if scheme is registered twice or d is nil, as
// database/sql.Register does: both are programming errors found at start.
func Register(scheme string, d Driver) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if d == nil {
		panic("message: Register driver is nil")
	}
	if _, dup := drivers[scheme]; dup {
		panic("message: Register called twice for scheme " + scheme)
	}
	drivers[scheme] = d
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	s := make([]string, 0, len(drivers))
	for k := range drivers {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// Open opens the backend named by rawURL's scheme, whose package must be
// imported (for its side effect) somewhere in the program:
// "switchyard://127.0.0.1:7070" needs kit/message/sybroker,
// "nats://127.0.0.1:4222" kit/message/jetstream.
func Open(ctx context.Context, rawURL string) (Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: opening messaging backend: %v", broker.ErrInvalid, err)
	}
	driversMu.RLock()
	d := drivers[u.Scheme]
	driversMu.RUnlock()
	if d == nil {
		return nil, fmt.Errorf("%w: opening messaging backend %q: no driver for scheme %q (registered: %v; import its package)",
			broker.ErrInvalid, rawURL, u.Scheme, Schemes())
	}
	return d(ctx, u)
}
