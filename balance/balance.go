// Package balance chooses which target of an upstream pool serves a request.
//
// Every policy implements Policy over a fixed slice of targets given at
// construction; a pool whose target set changes (config reload) builds a new
// policy. Policies skip targets that are not Available (unhealthy, draining,
// ejected) and those the request already tried, so a retry lands elsewhere.
package balance

import (
	"net/http"

	"github.com/switchyard/switchyard/upstream"
)

// Policy picks a target for one request attempt.
type Policy interface {
	// Pick returns an available target that is not in tried, or nil when
	// there is none. It must not allocate in steady state and is called
	// concurrently.
	Pick(r *http.Request, tried upstream.Tried) *upstream.Target
}

// Sticky is implemented by policies that pin a client to a target with a
// cookie set by the gateway (the "cookie" policy).
type Sticky interface {
	// StickyCookie returns the cookie the response must carry so that the
	// client's next request goes to t, or nil when the request already
	// carries the right one.
	StickyCookie(r *http.Request, t *upstream.Target) *http.Cookie
}
