package auth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Require is the authorization a route demands of an authenticated
// identity:
//
//   - Scopes: all of them (a token must carry every listed scope);
//   - Roles: at least one of them;
//   - Tiers: the consumer's tier is one of them.
//
// Empty lists demand nothing. Comparisons are exact and case-sensitive.
type Require struct {
	// Scopes the identity must all have.
	Scopes []string `yaml:"scopes"`
	// Roles of which the identity must have at least one.
	Roles []string `yaml:"roles"`
	// Tiers of which the identity's tier must be one.
	Tiers []string `yaml:"tiers"`
}

func (q *Require) empty() bool {
	return q == nil || len(q.Scopes)+len(q.Roles)+len(q.Tiers) == 0
}

// Validate rejects empty or duplicate values and values with spaces.
func (q Require) Validate() error {
	var errs []error
	check := func(kind string, vals []string) {
		for i, v := range vals {
			if !validHeaderToken(v, 256, false) {
				errs = append(errs, fmt.Errorf("require: %s %q: must be printable without spaces", kind, v))
			} else if slices.Contains(vals[:i], v) {
				errs = append(errs, fmt.Errorf("require: %s %q: listed twice", kind, v))
			}
		}
	}
	check("scope", q.Scopes)
	check("role", q.Roles)
	check("tier", q.Tiers)
	return errors.Join(errs...)
}

// Check returns nil when id satisfies q, else a 403 *Error with code
// forbidden whose message names what is missing. A nil id (an
// unauthenticated request) fails any non-empty Require. Check on a nil
// *Require passes.
func (q *Require) Check(id *Identity) error {
	if q.empty() {
		return nil
	}
	if id == nil {
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: "request is not authenticated"}
	}
	var missing []string
	for _, s := range q.Scopes {
		if !slices.Contains(id.Scopes, s) {
			missing = append(missing, s)
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "missing scopes "+quoteList(missing))
	}
	if len(q.Roles) > 0 && !slices.ContainsFunc(q.Roles, func(r string) bool { return slices.Contains(id.Roles, r) }) {
		problems = append(problems, "requires one of roles "+quoteList(q.Roles))
	}
	if len(q.Tiers) > 0 && !slices.Contains(q.Tiers, id.Tier) {
		problems = append(problems, "tier "+strconv.Quote(id.Tier)+" is not one of "+quoteList(q.Tiers))
	}
	if len(problems) == 0 {
		return nil
	}
	msg := strings.Join(problems, "; ")
	e := &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: msg}
	if id.Method == MethodJWT && len(missing) > 0 {
		// RFC 6750 §3.1: tell the client which scope a new token needs.
		e.Challenges = []string{`Bearer error="insufficient_scope", error_description="` +
			quoteSafe(msg) + `", scope="` + quoteSafe(strings.Join(q.Scopes, " ")) + `"`}
	}
	return e
}

func quoteList(vals []string) string {
	var b strings.Builder
	for i, v := range vals {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(v))
	}
	return b.String()
}
