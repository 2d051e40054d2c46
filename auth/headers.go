package auth

import (
	"net/http"
	"strings"
)

// Headers carrying the authenticated identity to upstreams.
const (
	HeaderConsumer = "X-Consumer"      // consumer name
	HeaderTier     = "X-Consumer-Tier" // consumer tier; absent when empty
	HeaderScopes   = "X-Scopes"        // space-separated scopes; absent when none
)

var identityHeaders = [...]string{HeaderConsumer, HeaderTier, HeaderScopes}

// StripIdentityHeaders removes client-supplied identity headers from h.
// The gateway calls it on every proxied request, including on auth: none
// routes, before ForwardHeaders. Besides the canonical names it removes
// spellings that some upstream stacks treat as the same header: any case,
// and '_' in place of '-' (CGI-style servers map both to HTTP_X_CONSUMER).
func StripIdentityHeaders(h http.Header) {
	for k := range h {
		if isIdentityHeader(k) {
			delete(h, k)
		}
	}
}

func isIdentityHeader(k string) bool {
	for _, want := range identityHeaders {
		if len(k) != len(want) {
			continue
		}
		match := true
		for i := 0; i < len(k) && match; i++ {
			c, w := k[i], want[i]
			if c == '_' {
				c = '-'
			}
			match = lower(c) == lower(w)
		}
		if match {
			return true
		}
	}
	return false
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// ForwardHeaders sets the identity headers on h (the request going
// upstream) from id. A nil id sets nothing. Call StripIdentityHeaders
// first.
func ForwardHeaders(h http.Header, id *Identity) {
	if id == nil {
		return
	}
	h[HeaderConsumer] = []string{id.Consumer}
	if id.Tier != "" {
		h[HeaderTier] = []string{id.Tier}
	}
	if len(id.Scopes) > 0 {
		s := id.scopeHeader
		if s == "" {
			s = strings.Join(id.Scopes, " ")
		}
		h[HeaderScopes] = []string{s}
	}
}
