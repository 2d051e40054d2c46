package auth

import (
	"errors"
	"fmt"
	"strings"
)

// Methods is a set of authentication methods a route accepts. The zero
// value, None, means the route needs no authentication.
type Methods uint8

// The authentication methods.
const (
	// MethodAPIKey: X-API-Key header, or Authorization: Bearer with a value
	// that does not look like a JWT (or any value when jwt is not accepted).
	MethodAPIKey Methods = 1 << iota
	// MethodJWT: Authorization: Bearer with a signed JWT.
	MethodJWT
	// MethodBasic: Authorization: Basic (RFC 7617), over TLS only unless
	// Config.AllowInsecureBasic.
	MethodBasic

	// None accepts every request without authentication.
	None Methods = 0
	// AllMethods accepts any of the methods.
	AllMethods = MethodAPIKey | MethodJWT | MethodBasic
)

var methodNames = [...]struct {
	m    Methods
	name string
}{{MethodAPIKey, "api_key"}, {MethodJWT, "jwt"}, {MethodBasic, "basic"}}

// ParseMethods parses method names: "api_key", "jwt", "basic", or "none"
// alone. An empty list is None.
func ParseMethods(names ...string) (Methods, error) {
	var m Methods
	var errs []error
	for _, n := range names {
		if n == "none" {
			if len(names) > 1 {
				errs = append(errs, errors.New("auth method \"none\" cannot be combined with others"))
			}
			continue
		}
		found := false
		for _, mn := range methodNames {
			if mn.name == n {
				if m&mn.m != 0 {
					errs = append(errs, fmt.Errorf("auth method %q: listed twice", n))
				}
				m |= mn.m
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("auth method %q: unknown: expected api_key, jwt, basic or none", n))
		}
	}
	return m, errors.Join(errs...)
}

// Has reports whether every method of o is in m.
func (m Methods) Has(o Methods) bool { return m&o == o }

// String returns the methods as a comma-separated list ("api_key,jwt"), or
// "none".
func (m Methods) String() string {
	switch m {
	case None:
		return "none"
	case MethodAPIKey:
		return "api_key"
	case MethodJWT:
		return "jwt"
	case MethodBasic:
		return "basic"
	}
	var parts []string
	for _, mn := range methodNames {
		if m&mn.m != 0 {
			parts = append(parts, mn.name)
		}
	}
	if m&^AllMethods != 0 {
		parts = append(parts, fmt.Sprintf("unknown(%#x)", uint8(m&^AllMethods)))
	}
	return strings.Join(parts, ",")
}

// UnmarshalYAML accepts a method name ("jwt", "none") or a list of names
// ([api_key, jwt]). It uses the decoder-callback form that YAML decoders
// (go.yaml.in/yaml/v3 included) accept, so this package imports no YAML
// library.
func (m *Methods) UnmarshalYAML(unmarshal func(any) error) error {
	var one string
	if err := unmarshal(&one); err == nil {
		v, err := ParseMethods(one)
		if err != nil {
			return err
		}
		*m = v
		return nil
	}
	var list []string
	if err := unmarshal(&list); err != nil {
		return errors.New("auth: expected a method name or a list of api_key, jwt, basic; or none")
	}
	v, err := ParseMethods(list...)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalYAML writes the methods as a list of names, or "none".
func (m Methods) MarshalYAML() (any, error) {
	if m == None {
		return "none", nil
	}
	return strings.Split(m.String(), ","), nil
}

// Route is the per-route policy: which methods authenticate the request
// (`auth:`) and what the identity needs (`require:`). The gateway may embed
// it inline in its route config:
//
//	auth: [jwt, api_key]      # or a single name, or none (default)
//	require: { scopes: [orders:write], roles: [admin, ops], tiers: [premium] }
type Route struct {
	// Auth lists the accepted methods. Default none: the route is open.
	Auth Methods `yaml:"auth"`
	// Require is checked after authentication. Nil requires nothing.
	Require *Require `yaml:"require"`
}

// Validate reports a Require without any auth method, which no request
// could ever satisfy.
func (r Route) Validate() error {
	if r.Auth&^AllMethods != 0 {
		return fmt.Errorf("auth %s: unknown method", r.Auth)
	}
	if r.Auth == None && r.Require != nil && !r.Require.empty() {
		return errors.New("require: needs an auth method: with auth none no identity can satisfy it")
	}
	if r.Require != nil {
		return r.Require.Validate()
	}
	return nil
}
