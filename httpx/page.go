package httpx

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Cursor pagination of sorted lists of names, with RFC 8288 Link headers,
// and entity tags with conditional requests (RFC 9110 §13), as the
// broker's and the registry's list endpoints answer them:
//
//	GET /v1/queues?limit=2
//	Link: </v1/queues?cursor=djE6cXVldWU6b3JkZXJzLmV1&limit=2>; rel="next"
//	ETag: "5c1f0a7b3e2d9c41"
//
// A cursor is opaque to clients: base64url of "v1:SCOPE:NAME", the last
// name of the page before. It is a validated position, not a capability:
// it only says where the listing resumes, and the listing still shows
// only what the caller may see, so forging one reads nothing more than
// asking without it. SCOPE ties a cursor to one list (a queues cursor is
// refused on topics).

// Page is a parsed page request.
type Page struct {
	Limit int    // names per page, 1..max
	After string // resume after this name; "" from the start
}

// PageError is a bad limit or cursor: its message names the parameter,
// what was given and what was expected. Answer it with 400.
type PageError struct{ Msg string }

func (e *PageError) Error() string { return e.Msg }

// maxCursor bounds a cursor's length (a name is at most a few hundred
// bytes; a longer cursor is not one of ours).
const maxCursor = 1024

// ParsePage reads the limit and cursor query parameters of r for the
// list scope: limit defaults to def and may be at most max; cursor must be
// one EncodeCursor made for scope. Errors are *PageError.
func ParsePage(r *http.Request, scope string, def, max int) (Page, error) {
	p := Page{Limit: def}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// A malformed pair would be dropped, and a mangled cursor or limit
		// silently read as none.
		return p, &PageError{Msg: fmt.Sprintf("query %q: %v: expected name=value pairs, percent-encoded", trunc(r.URL.RawQuery), err)}
	}
	if vs, ok := q["limit"]; ok {
		if len(vs) != 1 {
			return p, &PageError{Msg: "query parameter limit given more than once: expected one"}
		}
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 1 || n > max {
			return p, &PageError{Msg: fmt.Sprintf("query parameter limit %q: expected a whole number from 1 to %d", trunc(vs[0]), max)}
		}
		p.Limit = n
	}
	if vs, ok := q["cursor"]; ok {
		if len(vs) != 1 {
			return p, &PageError{Msg: "query parameter cursor given more than once: expected one"}
		}
		after, err := DecodeCursor(scope, vs[0])
		if err != nil {
			return p, err
		}
		p.After = after
	}
	return p, nil
}

// EncodeCursor is the cursor that resumes the list scope after name.
func EncodeCursor(scope, after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1:" + scope + ":" + after))
}

// DecodeCursor returns the name a cursor of scope resumes after, or a
// *PageError saying what is wrong with it.
func DecodeCursor(scope, cursor string) (string, error) {
	bad := func(why string) error {
		return &PageError{Msg: fmt.Sprintf("query parameter cursor %q: %s: expected the cursor of a Link rel=\"next\" of this list (%s), unchanged", trunc(cursor), why, scope)}
	}
	if cursor == "" {
		return "", bad("empty")
	}
	if len(cursor) > maxCursor {
		return "", bad(fmt.Sprintf("%d bytes, at most %d", len(cursor), maxCursor))
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return "", bad("not base64url")
	}
	s := string(raw)
	v, rest, ok := strings.Cut(s, ":")
	if !ok || v != "v1" {
		return "", bad("not a cursor of this server")
	}
	sc, after, ok := strings.Cut(rest, ":")
	if !ok || sc != scope {
		return "", bad("a cursor of another list")
	}
	if after == "" || strings.ContainsAny(after, "\x00\r\n") {
		return "", bad("no position in it")
	}
	return after, nil
}

// PageOf returns the page of sorted names p asks for, and the name the
// next page resumes after ("" when this is the last page).
func PageOf(names []string, p Page) (page []string, next string) {
	i := 0
	if p.After != "" {
		i = sort.SearchStrings(names, p.After)
		if i < len(names) && names[i] == p.After {
			i++
		}
	}
	end := min(i+p.Limit, len(names))
	page = names[i:end]
	if end < len(names) && len(page) > 0 {
		next = page[len(page)-1]
	}
	return page, next
}

// PageRange is PageOf for a list of n items sorted by key (strictly
// increasing, as names are): the page p asks for is items[start:end], and
// next is the key the following page resumes after ("" on the last page).
func PageRange(n int, key func(i int) string, p Page) (start, end int, next string) {
	if p.After != "" {
		start = sort.Search(n, func(i int) bool { return key(i) > p.After })
	}
	end = min(start+p.Limit, n)
	if end < n && end > start {
		next = key(end - 1)
	}
	return start, end, next
}

// SetNextLink adds the Link header (rel="next") to the page after next
// of r's list, keeping r's other query parameters; nothing when next is "".
func SetNextLink(w http.ResponseWriter, r *http.Request, scope, next string, limit int) {
	if next == "" {
		return
	}
	q := r.URL.Query()
	q.Set("cursor", EncodeCursor(scope, next))
	q.Set("limit", strconv.Itoa(limit))
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	w.Header().Add("Link", "<"+u.String()+`>; rel="next"`)
}

// NextLink returns the target of the rel="next" link among Link header
// values, or "".
func NextLink(values []string) string {
	for _, v := range values {
		for _, part := range splitLinks(v) {
			part = strings.TrimSpace(part)
			if !strings.HasPrefix(part, "<") {
				continue
			}
			end := strings.Index(part, ">")
			if end < 0 {
				continue
			}
			target, params := part[1:end], part[end+1:]
			for _, prm := range strings.Split(params, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(prm), "=")
				if strings.EqualFold(k, "rel") {
					for _, rel := range strings.Fields(strings.Trim(val, `"`)) {
						if strings.EqualFold(rel, "next") {
							return target
						}
					}
				}
			}
		}
	}
	return ""
}

// splitLinks splits a Link header value at the commas between links (not
// those inside <...> or quotes).
func splitLinks(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			quoted = !quoted
		case c == '<' && !quoted:
			depth++
		case c == '>' && !quoted && depth > 0:
			depth--
		case c == ',' && !quoted && depth == 0:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// ETag is a strong entity tag of a representation's bytes.
func ETag(body []byte) string {
	s := sha256.Sum256(body)
	return `"` + hex.EncodeToString(s[:8]) + `"`
}

// NotModified sets the ETag header and reports whether r's If-None-Match
// matches etag (weak comparison, "*" matches): the caller then answers
// 304 with no body (NotModified has written it).
func NotModified(w http.ResponseWriter, r *http.Request, etag string) bool {
	w.Header().Set("ETag", etag)
	inm := r.Header.Values("If-None-Match")
	if len(inm) == 0 || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return false
	}
	if matchTag(inm, etag, true) {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	return false
}

// ErrPreconditionFailed is what IfMatch returns when the resource changed
// since the client read it: answer 412.
var ErrPreconditionFailed = errors.New("precondition failed")

// IfMatch checks r's If-Match against the resource's current etag
// (strong comparison; "*" matches any existing resource): nil without
// If-Match or when it matches, else an error wrapping
// ErrPreconditionFailed that says so.
func IfMatch(r *http.Request, etag string) error {
	im := r.Header.Values("If-Match")
	if len(im) == 0 || matchTag(im, etag, false) {
		return nil
	}
	return fmt.Errorf("%w: If-Match %s: the resource changed since (its ETag is now %s): read it again and retry", ErrPreconditionFailed, trunc(strings.Join(im, ", ")), etag)
}

// matchTag reports whether a list of entity tags (header values) matches
// etag; weak also lets W/"x" match "x".
func matchTag(values []string, etag string, weak bool) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" {
				return true
			}
			if weak {
				t = strings.TrimPrefix(t, "W/")
			}
			if t == etag {
				return true
			}
		}
	}
	return false
}

// trunc shortens a value quoted in an error.
func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
