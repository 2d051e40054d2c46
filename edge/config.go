package edge

import (
	"errors"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/switchyard/switchyard/config"
)

// Defaults applied to zero fields.
const (
	// DefaultMaxObject is the largest response stored when max_object is 0.
	DefaultMaxObject = 64 << 20
	// DefaultStatusName names this cache in Cache-Status.
	DefaultStatusName = "switchyard"
	// MaxVariants bounds the Vary variants kept per key; the oldest goes.
	MaxVariants = 16
	// MaxRanges bounds the ranges of one Range request answered from a
	// stored response; a request with more gets the whole 200 (RFC 9110
	// section 14.2 lets a server ignore many small or overlapping ranges).
	MaxRanges = 64
	// HeuristicMax caps heuristic freshness (10% of the time since Last-Modified).
	HeuristicMax = 24 * time.Hour
)

// Config is one named cache: the YAML block caches.NAME.
type Config struct {
	// Memory is the bound on bytes of headers and bodies held in memory
	// (plus a small fixed overhead per entry). Required.
	Memory config.ByteSize `yaml:"memory"`
	// Disk is the optional second tier: every stored entry is also
	// written there (write-through), what memory evicts is read back from
	// there, and the files survive restarts (see OpenStore).
	Disk *Disk `yaml:"disk"`
	// MaxObject is the largest response stored; larger ones stream
	// through uncached, never buffered whole. Default 64MiB.
	MaxObject config.ByteSize `yaml:"max_object"`
	// Compress, when present, compresses stored responses with gzip
	// and/or brotli for clients that accept them (see Compress).
	Compress *Compress `yaml:"compress"`
	// ForwardTags passes the purge tags on to clients (see
	// Options.ForwardTags): set it on a shield whose clients are edges.
	ForwardTags bool `yaml:"forward_tags"`
	// Policy holds the per-route defaults, which a route may override.
	Policy `yaml:",inline"`
}

// Disk is the disk tier's settings (see Config.Disk).
type Disk struct {
	// Path is the directory entries are written to.
	Path string `yaml:"path"`
	// Size bounds the bytes on disk.
	Size config.ByteSize `yaml:"size"`
}

// Policy is how a route uses a cache; each route may override the named
// cache's values.
type Policy struct {
	// DefaultTTL is the freshness lifetime of a response whose origin gave
	// no explicit one (no s-maxage, max-age or Expires) and whose status is
	// heuristically cacheable (200, 203, 204, 300, 301, 308, 404, 405, 410,
	// 414, 501). 0 (default): the RFC 9111 heuristic, 10% of the time
	// since Last-Modified (at most 24h), or not stored without Last-Modified.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// TTLJitter shortens each entry's lifetime by a random share up to
	// this ("10%"), so entries stored together do not expire together.
	// Default 0.
	TTLJitter config.Percent `yaml:"ttl_jitter"`
	// StaleWhileRevalidate is the RFC 5861 window used when the origin's
	// Cache-Control does not give one. Default 0.
	StaleWhileRevalidate time.Duration `yaml:"stale_while_revalidate"`
	// StaleIfError is the RFC 5861 window used when the origin's
	// Cache-Control does not give one. Default 0.
	StaleIfError time.Duration `yaml:"stale_if_error"`
	// Key lists what the cache key is made of: host, path, query (the
	// whole query string), header:NAME, cookie:NAME, query:NAME (one
	// query parameter). Default [host, path, query]. Request headers not
	// listed (and not named by the response's Vary) never select a
	// stored response.
	Key []string `yaml:"key"`
	// AllowSetCookie stores responses that carry Set-Cookie (and replays
	// the cookie to every client). Default false: they pass uncached.
	AllowSetCookie bool `yaml:"allow_set_cookie"`
}

// Validate reports every problem with the cache's settings, each as a
// *config.FieldError at its key.
func (c *Config) Validate() error {
	var errs []error
	if c.Memory <= 0 {
		errs = append(errs, config.Fieldf("memory", "required: the bytes of headers and bodies held in memory, e.g. 512MiB"))
	}
	if c.Disk != nil {
		if c.Disk.Path == "" {
			errs = append(errs, config.Fieldf("disk.path", "required: the directory entries are written to, e.g. /var/cache/sy"))
		}
		if c.Disk.Size <= 0 {
			errs = append(errs, config.Fieldf("disk.size", "required: the bytes the files may take, e.g. 20GiB"))
		} else if c.MaxObject > 0 && c.MaxObject > c.Disk.Size {
			errs = append(errs, config.Fieldf("max_object", "%s is larger than disk.size (%s)", c.MaxObject, c.Disk.Size))
		}
	}
	if c.MaxObject < 0 {
		errs = append(errs, config.Fieldf("max_object", "must not be negative"))
	}
	if c.MaxObject > 0 && c.Memory > 0 && c.MaxObject > c.Memory {
		errs = append(errs, config.Fieldf("max_object", "%s is larger than memory (%s)", c.MaxObject, c.Memory))
	}
	if c.Compress != nil {
		if err := c.Compress.Validate(); err != nil {
			errs = append(errs, prefixErrs("compress", err))
		}
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the policy, each as a
// *config.FieldError at its key.
func (p *Policy) Validate() error {
	var errs []error
	if p.DefaultTTL < 0 {
		errs = append(errs, config.Fieldf("default_ttl", "must not be negative, got %s", p.DefaultTTL))
	}
	if p.TTLJitter >= 1 {
		errs = append(errs, config.Fieldf("ttl_jitter", "must be below 100%%, got %s", p.TTLJitter))
	}
	if p.StaleWhileRevalidate < 0 {
		errs = append(errs, config.Fieldf("stale_while_revalidate", "must not be negative, got %s", p.StaleWhileRevalidate))
	}
	if p.StaleIfError < 0 {
		errs = append(errs, config.Fieldf("stale_if_error", "must not be negative, got %s", p.StaleIfError))
	}
	if _, err := parseKey(p.Key); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// prefixErrs puts each *config.FieldError in err under the key prefix.
func prefixErrs(prefix string, err error) error {
	var out []error
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var fe *config.FieldError
		if errors.As(e, &fe) && fe.Path == "" {
			out = append(out, &config.FieldError{Path: prefix, Err: fe.Err})
		} else if errors.As(e, &fe) {
			out = append(out, &config.FieldError{Path: config.Join(prefix, fe.Path), Err: fe.Err})
		} else {
			out = append(out, &config.FieldError{Path: prefix, Err: e})
		}
	}
	return errors.Join(out...)
}

// keyPart is one element of a cache key.
type keyPart struct {
	kind byte   // 'h' host, 'p' path, 'q' query, 'H' header, 'C' cookie, 'Q' query parameter
	name string // canonical header name, cookie or parameter name
}

var defaultKey = []keyPart{{kind: 'h'}, {kind: 'p'}, {kind: 'q'}}

func parseKey(spec []string) ([]keyPart, error) {
	if len(spec) == 0 {
		return defaultKey, nil
	}
	var parts []keyPart
	var errs []error
	seen := map[string]bool{}
	for i, s := range spec {
		at := "key[" + itoa(i) + "]"
		if seen[strings.ToLower(s)] {
			errs = append(errs, config.Fieldf(at, "%q is listed twice", s))
			continue
		}
		seen[strings.ToLower(s)] = true
		kind, name, hasName := strings.Cut(s, ":")
		switch {
		case !hasName && kind == "host":
			parts = append(parts, keyPart{kind: 'h'})
		case !hasName && kind == "path":
			parts = append(parts, keyPart{kind: 'p'})
		case !hasName && kind == "query":
			parts = append(parts, keyPart{kind: 'q'})
		case hasName && name != "" && kind == "header":
			if !validToken(name) {
				errs = append(errs, config.Fieldf(at, "%q is not a valid header name", name))
				continue
			}
			parts = append(parts, keyPart{kind: 'H', name: textproto.CanonicalMIMEHeaderKey(name)})
		case hasName && name != "" && kind == "cookie":
			parts = append(parts, keyPart{kind: 'C', name: name})
		case hasName && name != "" && kind == "query":
			parts = append(parts, keyPart{kind: 'Q', name: name})
		default:
			errs = append(errs, config.Fieldf(at, "unknown key element %q: expected host, path, query, header:NAME, cookie:NAME or query:NAME", s))
		}
	}
	if !seen["path"] {
		errs = append(errs, config.Fieldf("key", "must include path (a key without it would give every URL the same response)"))
	}
	return parts, errors.Join(errs...)
}

// validToken reports whether s is an RFC 9110 token (the rule of
// httpguts, shared with every other token check).
func validToken(s string) bool { return httpguts.ValidHeaderFieldName(s) }

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// buildKey appends the request's key for parts to b.
func buildKey(b []byte, parts []keyPart, r *http.Request) []byte {
	for _, p := range parts {
		switch p.kind {
		case 'h':
			b = append(b, "h="...)
			for i := 0; i < len(r.Host); i++ {
				c := r.Host[i]
				if c >= 'A' && c <= 'Z' {
					c += 'a' - 'A'
				}
				b = append(b, c)
			}
		case 'p':
			b = append(b, "\x00p="...)
			b = append(b, r.URL.EscapedPath()...)
		case 'q':
			b = append(b, "\x00q="...)
			b = append(b, r.URL.RawQuery...)
		case 'H':
			b = append(b, "\x00H:"...)
			b = append(b, p.name...)
			b = append(b, '=')
			for i, v := range r.Header[p.name] {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, v...)
			}
		case 'C':
			b = append(b, "\x00C:"...)
			b = append(b, p.name...)
			if c, err := r.Cookie(p.name); err == nil {
				b = append(b, '=')
				b = append(b, c.Value...)
			}
		case 'Q':
			b = append(b, "\x00Q:"...)
			b = append(b, p.name...)
			if vs, ok := r.URL.Query()[p.name]; ok {
				b = append(b, '=')
				b = append(b, strings.Join(vs, "\x01")...)
			}
		}
	}
	return b
}

// uriOf is the target URI an entry is indexed (and purged, and
// invalidated) by: the lowercased host, the escaped path and the query.
func uriOf(host, path, rawQuery string) string {
	u := strings.ToLower(host) + path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	return u
}
