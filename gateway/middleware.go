package gateway

import (
	"errors"

	"github.com/switchyard/switchyard/auth"
	"github.com/switchyard/switchyard/cors"
	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/ipfilter"
	"github.com/switchyard/switchyard/throttle"
	"github.com/switchyard/switchyard/tlsconf"
	"github.com/switchyard/switchyard/transform"
)

// routeMiddleware builds the per-route chain, outermost first: CORS
// (preflights carry no credentials), IP filter, client certificate
// requirement (and its identity forwarded), body size cap, identity
// (strip client-supplied identity headers, authenticate, authorize,
// forward the identity), rate limits (which may count by the identity),
// request transformation, fault injection.
func routeMiddleware(cfg *Config, path string, r Route, authn *auth.Authenticator, deps buildDeps) ([]httpx.Middleware, error) {
	var errs []error
	if r.Auth != auth.None {
		if authn == nil {
			errs = append(errs, cfg.Errorf(path+".auth", "route accepts %s but the config has no top-level auth section", r.Auth))
		} else if err := authn.CheckMethods(r.Auth); err != nil {
			errs = append(errs, cfg.Wrap(path+".auth", err))
		}
	}
	if r.Require != nil {
		if r.Auth == auth.None {
			errs = append(errs, cfg.Errorf(path+".require", "authorization needs authentication: set auth on the route"))
		}
		if err := r.Require.Validate(); err != nil {
			errs = append(errs, cfg.Wrap(path+".require", err))
		}
	}
	var mws []httpx.Middleware
	if r.CORS != nil { // outermost: preflights carry no credentials
		c, err := cors.New(*r.CORS)
		if err != nil {
			errs = append(errs, cfg.Wrap(path+".cors", err))
		} else {
			mws = append(mws, c.Middleware())
		}
	}
	if r.IPFilter != nil {
		f, err := ipfilter.New(*r.IPFilter)
		if err != nil {
			errs = append(errs, cfg.Wrap(path+".ip_filter", err))
		} else {
			mws = append(mws, f.Middleware())
		}
	}
	if r.ClientCert != "" { // validated: tls.client_ca is set
		mws = append(mws, tlsconf.Middleware(r.ClientCert))
	}
	if r.MaxRequestBody > 0 {
		mws = append(mws, transform.MaxBytes(r.MaxRequestBody))
	}
	mws = append(mws, auth.Middleware(authn, r.Auth, r.Require))
	if r.RateLimit != nil {
		t, err := throttle.New(*r.RateLimit, r.Name, deps.limits, deps.log)
		if err != nil {
			errs = append(errs, cfg.Wrap(path+".rate_limit", err))
		} else {
			mws = append(mws, t.Middleware())
		}
	}
	if c := deps.contracts[r.Contract]; c != nil { // unknown names were refused by validate
		mws = append(mws, c.Middleware(deps.log))
	}
	if t := r.Transform; t != nil && t.Request != nil {
		rt, err := transform.NewRequest(*t.Request)
		if err != nil {
			errs = append(errs, cfg.Wrap(path+".transform.request", err))
		} else {
			mws = append(mws, rt.Middleware())
		}
	}
	if r.Fault != nil {
		if err := r.Fault.Validate(); err != nil {
			errs = append(errs, cfg.Wrap(path+".fault", err))
		}
	}
	// Fault injection, innermost but for the cache: a faulted request has
	// passed auth, limits and the request transform, as a slow or failing
	// upstream would see it. Every route gets it, so that a fault can be
	// set at runtime; without one it costs an atomic load.
	if deps.faults != nil {
		mws = append(mws, deps.faults.Middleware(r.Name))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return mws, nil
}
