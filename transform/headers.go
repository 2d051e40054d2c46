package transform

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Headers edits an HTTP header. Operations run in a fixed order: Remove,
// then Rename, then Set, then Add. Names are case-insensitive.
//
// Headers the proxy manages (Host, Content-Length, Transfer-Encoding and
// the hop-by-hop headers Connection, Keep-Alive, Proxy-Connection, TE,
// Trailer, Upgrade) cannot be edited.
type Headers struct {
	// Set replaces every value of each named header with the given one
	// (adding the header when absent). Default none.
	Set map[string]string `yaml:"set"`
	// Add appends a value to each named header, keeping existing values.
	// Default none.
	Add map[string]string `yaml:"add"`
	// Remove deletes the named headers. Default none.
	Remove []string `yaml:"remove"`
	// Rename moves every value of header OLD to header NEW (map OLD: NEW),
	// replacing any values NEW had; nothing happens when OLD is absent.
	// A name may not be both renamed and a rename target, and two names may
	// not be renamed to the same target (either would depend on map order).
	// Default none.
	Rename map[string]string `yaml:"rename"`
}

// managedHeaders cannot be edited by a transform: the proxy or net/http
// computes them.
var managedHeaders = []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade"}

// validate reports every problem, each prefixed with key ("headers").
func (h Headers) validate(key string) []error {
	var errs []error
	checkName := func(op, name string) string {
		if !httpguts.ValidHeaderFieldName(name) {
			errs = append(errs, fmt.Errorf("%s.%s: header name %q: expected a token such as X-Api-Version", key, op, name))
			return ""
		}
		c := http.CanonicalHeaderKey(name)
		if slices.Contains(managedHeaders, c) {
			errs = append(errs, fmt.Errorf("%s.%s: header %q is managed by the proxy; expected any other header", key, op, name))
		}
		return c
	}
	checkValue := func(op, name, v string) {
		if !validFieldValue(v) {
			errs = append(errs, fmt.Errorf("%s.%s: header %q: value %q: expected no control characters and no leading or trailing spaces", key, op, name, v))
		}
	}
	for _, op := range []struct {
		name string
		m    map[string]string
	}{{"set", h.Set}, {"add", h.Add}} {
		seen := map[string]string{}
		for _, name := range sortedKeys(op.m) {
			c := checkName(op.name, name)
			checkValue(op.name, name, op.m[name])
			if prev, dup := seen[c]; dup && c != "" {
				errs = append(errs, fmt.Errorf("%s.%s: header %q given twice (also as %q); expected each name once", key, op.name, name, prev))
			}
			seen[c] = name
		}
	}
	for _, name := range h.Remove {
		checkName("remove", name)
	}
	sources, targets := map[string]string{}, map[string]string{}
	for _, from := range sortedKeys(h.Rename) {
		to := h.Rename[from]
		cf, ct := checkName("rename", from), checkName("rename", to)
		if cf == "" || ct == "" {
			continue
		}
		if cf == ct {
			errs = append(errs, fmt.Errorf("%s.rename: %q to %q: expected a different name", key, from, to))
		}
		if prev, dup := targets[ct]; dup {
			errs = append(errs, fmt.Errorf("%s.rename: %q and %q both renamed to %q; expected one source per target", key, prev, from, to))
		}
		if prev, dup := sources[cf]; dup {
			errs = append(errs, fmt.Errorf("%s.rename: header %q given twice (also as %q); expected each name once", key, from, prev))
		}
		sources[cf], targets[ct] = from, from
	}
	for _, from := range sortedKeys(h.Rename) {
		if to := http.CanonicalHeaderKey(h.Rename[from]); sources[to] != "" && to != http.CanonicalHeaderKey(from) {
			errs = append(errs, fmt.Errorf("%s.rename: %q is renamed to %q, which is itself renamed; expected no chains", key, from, h.Rename[from]))
		}
	}
	return errs
}

// headerOps is a compiled Headers. Its slices are read-only after
// compilation.
type headerOps struct {
	remove []string      // canonical names
	rename []renameOp    // canonical names
	set    []headerValue // canonical names
	add    []headerValue // canonical names
	setVal []string      // all Set values, in set order: copied once per Apply
}

type renameOp struct{ from, to string }

type headerValue struct{ name, value string }

func compileHeaders(h Headers) headerOps {
	var ops headerOps
	for _, name := range h.Remove {
		ops.remove = append(ops.remove, http.CanonicalHeaderKey(name))
	}
	for _, from := range sortedKeys(h.Rename) {
		ops.rename = append(ops.rename, renameOp{http.CanonicalHeaderKey(from), http.CanonicalHeaderKey(h.Rename[from])})
	}
	for _, name := range sortedKeys(h.Set) {
		ops.set = append(ops.set, headerValue{http.CanonicalHeaderKey(name), h.Set[name]})
		ops.setVal = append(ops.setVal, h.Set[name])
	}
	for _, name := range sortedKeys(h.Add) {
		ops.add = append(ops.add, headerValue{http.CanonicalHeaderKey(name), h.Add[name]})
	}
	return ops
}

func (o *headerOps) empty() bool {
	return len(o.remove)+len(o.rename)+len(o.set)+len(o.add) == 0
}

// apply edits h. It allocates one slice for all Set values (so no response
// shares backing arrays with another), one per Add, plus map growth.
func (o *headerOps) apply(h http.Header) {
	for _, name := range o.remove {
		delete(h, name)
	}
	for _, r := range o.rename {
		if v, ok := h[r.from]; ok {
			delete(h, r.from)
			h[r.to] = v
		}
	}
	if len(o.set) > 0 {
		vals := slices.Clone(o.setVal)
		for i, s := range o.set {
			h[s.name] = vals[i : i+1 : i+1]
		}
	}
	for _, a := range o.add {
		h[a.name] = append(h[a.name], a.value)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// validFieldValue reports whether v is a valid RFC 9110 field value: no
// CR, LF, NUL or other controls except tab, no surrounding whitespace.
func validFieldValue(v string) bool {
	return httpguts.ValidHeaderFieldValue(v) && strings.TrimSpace(v) == v
}
