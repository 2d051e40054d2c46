// Package edge is an RFC 9111 shared HTTP cache that wraps a route's
// handler: storability, freshness, Age, Vary, validation, invalidation,
// RFC 5861 stale-while-revalidate and stale-if-error, RFC 9213
// CDN-Cache-Control, RFC 9211 Cache-Status, and request coalescing, over
// a memory tier bounded by bytes and an optional disk tier (OpenStore)
// that survives restarts, with gzip and brotli variants of compressible
// responses (Compress).
//
// A Store is a named cache's memory; a Cache is one route's use of it
// (its Policy), and Cache.Middleware wraps the handler that reaches the
// origin. Hits are written from stored bytes without calling that
// handler. The package speaks net/http and httpx only, never the proxy.
package edge

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/httpx"
)

// BackgroundTimeout bounds a background revalidation.
const BackgroundTimeout = time.Minute

// Cache is one route's use of a Store. Make it with New; Close stops its
// background revalidations.
type Cache struct {
	store *Store
	pol   Policy
	key   []keyPart
	name  string
	comp  *compressor // nil: no compression

	forwardTags bool // pass the purge tags on to clients (Options.ForwardTags)

	keyed       map[string]bool // header names the key lists (header:NAME)
	wholeQuery  bool            // the key lists query
	queryParams []string        // the parameters the key lists (query:NAME)

	// Cache-Status values, built once.
	stHit, stHitCoalesced []string

	background atomic.Pointer[http.Handler]
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// Options are a Cache's settings beyond its Policy.
type Options struct {
	// Name identifies this cache in Cache-Status. Default "switchyard".
	Name string
	// Compress, when set, compresses stored responses for the clients
	// that accept it (see Compress); validated by New.
	Compress *Compress
	// ForwardTags passes the purge tags (Surrogate-Key, Cache-Tag) on to
	// the clients instead of stripping them: for a shield whose clients
	// are other caches, so that they learn the tags and a tag purge can
	// reach them too. A hit carries its stored tags as one Surrogate-Key.
	// Default false: the tags are this cache's business (they may name
	// internal things) and clients do not see them.
	ForwardTags bool
}

// New makes a route's cache over store with the policy (validated here).
func New(store *Store, pol Policy, opts Options) (*Cache, error) {
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	parts, _ := parseKey(pol.Key)
	if opts.Compress != nil {
		if err := opts.Compress.Validate(); err != nil {
			return nil, err
		}
	}
	if opts.Name == "" {
		opts.Name = DefaultStatusName
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cache{store: store, pol: pol, key: parts, name: opts.Name, ctx: ctx, cancel: cancel, comp: newCompressor(opts.Compress), forwardTags: opts.ForwardTags}
	c.keyed = map[string]bool{}
	for _, p := range parts {
		switch p.kind {
		case 'q':
			c.wholeQuery = true
		case 'Q':
			c.queryParams = append(c.queryParams, p.name)
		case 'H':
			c.keyed[p.name] = true
		}
	}
	c.stHit = []string{opts.Name + "; hit"}
	c.stHitCoalesced = []string{opts.Name + "; hit; detail=coalesced"}
	return c, nil
}

// Store returns the cache's memory tier.
func (c *Cache) Store() *Store { return c.store }

// SetBackground sets the handler background revalidations are sent
// through. In the gateway that is the gateway's whole handler, so a
// revalidation gets its own per-request state; the cache recognises its
// own background requests and passes them to the origin handler. When
// unset (nil), background requests go straight to the wrapped handler.
func (c *Cache) SetBackground(h http.Handler) { c.background.Store(&h) }

// Close stops background revalidations and waits for them.
func (c *Cache) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// Middleware returns the cache as a route middleware.
func (c *Cache) Middleware() httpx.Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.serve(next, w, r) })
	}
}

// bgKey marks a background revalidation request; its value is the
// *recorder the origin's answer goes to.
type bgKey struct{}

// status builds a Cache-Status value for this cache.
func (c *Cache) status(params ...string) []string {
	return []string{c.name + "; " + strings.Join(params, "; ")}
}

func (c *Cache) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	if rec, ok := r.Context().Value(bgKey{}).(*recorder); ok {
		next.ServeHTTP(rec, r) // our own background revalidation
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions, http.MethodTrace:
		c.pass(next, w, r, "method")
		return
	default:
		c.unsafe(next, w, r)
		return
	}
	var rq Directives
	if cc := r.Header["Cache-Control"]; len(cc) > 0 {
		rq = ParseDirectives(cc)
	} else {
		rq = ParseDirectives(nil)
		if p := r.Header["Pragma"]; len(p) > 0 && strings.Contains(strings.ToLower(strings.Join(p, ",")), "no-cache") {
			rq.NoCache = true // RFC 9111 section 5.4
		}
	}
	if rq.NoStore {
		c.pass(next, w, r, "request")
		return
	}
	var kb [256]byte
	c.lookup(next, w, r, buildKey(kb[:0], c.key, r), rq, true)
}

// lookup answers from the store when it can, and otherwise fetches; with
// coalesce set, concurrent fetches of one key wait for a single one.
func (c *Cache) lookup(next http.Handler, w http.ResponseWriter, r *http.Request, kb []byte, rq Directives, coalesce bool) {
	now := time.Now()
	e, known := c.store.lookup(kb, r)
	fwd := "uri-miss"
	if known {
		fwd = "vary-miss"
	}
	if e != nil {
		age := e.age(now)
		fresh := e.lifetime - age
		if fresh > 0 && !e.noCache && !rq.NoCache &&
			(rq.MaxAge < 0 || age <= time.Duration(rq.MaxAge)*time.Second) &&
			(rq.MinFresh < 0 || fresh >= time.Duration(rq.MinFresh)*time.Second) {
			c.store.hits.Add(1)
			c.writeHit(w, r, e, age, c.stHit)
			return
		}
		if fresh <= 0 && !rq.NoCache && !e.noCache && !e.mustRevalidate {
			staleBy := -fresh
			if !e.sMaxAge && (rq.MaxStaleAny || rq.MaxStale >= 0 && staleBy <= time.Duration(rq.MaxStale)*time.Second) {
				c.store.stale.Add(1)
				c.writeHit(w, r, e, age, c.status("hit", "detail=max-stale"))
				return
			}
			if staleBy <= e.swr && (rq.MaxAge < 0) {
				c.store.stale.Add(1)
				c.revalidateInBackground(next, r, string(kb), e)
				c.writeHit(w, r, e, age, c.status("hit", "detail=stale-while-revalidate"))
				return
			}
		}
		fwd = "stale"
		if fresh > 0 && !e.noCache {
			fwd = "request" // fresh, but the client's directives refused it
		}
	}
	key := string(kb)
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		// A GET or HEAD with a body ("fat GET"): the body is not keyed,
		// and origins that read it would let it shape the stored
		// answer. Passed on, never stored.
		c.store.misses.Add(1)
		c.pass(next, w, r, fwd+"; detail=body")
		return
	}
	if len(r.Header["Range"]) > 0 {
		// A range the store cannot answer: the origin's 206 is passed on,
		// never stored (only full responses are).
		c.store.misses.Add(1)
		c.pass(next, w, r, fwd+"; detail=range")
		return
	}
	if rq.OnlyIfCached {
		w.Header()["Cache-Status"] = c.status("fwd=miss", "detail=only-if-cached")
		httpx.WriteError(w, r, &httpx.Error{Status: http.StatusGatewayTimeout, Code: "not_cached", Msg: "only-if-cached: no usable stored response"})
		return
	}
	if !coalesce {
		c.store.misses.Add(1)
		c.fetch(next, w, r, fetchArgs{key: key, stale: e, fwd: fwd, rq: rq})
		return
	}
	f, leader := c.store.join(key)
	if !leader {
		c.store.coalesced.Add(1)
		select {
		case <-f.done:
		case <-r.Context().Done():
			httpx.RecordStatus(r, 499)
			return
		}
		if f.stored {
			if e2, _ := c.store.lookup(kb, r); e2 != nil && e2.lifetime-e2.age(time.Now()) > 0 && !e2.noCache && !rq.NoCache {
				c.store.hits.Add(1)
				c.writeHit(w, r, e2, e2.age(time.Now()), c.stHitCoalesced)
				return
			}
		}
		// Uncacheable, or not for this request: go to the origin ourselves.
		c.lookup(next, w, r, kb, rq, false)
		return
	}
	defer f.land(c.store, key)
	c.store.misses.Add(1)
	c.fetch(next, w, r, fetchArgs{key: key, stale: e, fwd: fwd, rq: rq, flight: f})
}

// ages holds the Age values of the first hour, built once and never
// changed, so a hit does not format one.
var ages = func() [][]string {
	a := make([][]string, 3600)
	for i := range a {
		a[i] = []string{strconv.Itoa(i)}
	}
	return a
}()

// ageValue is the Age field of an entry secs old: at most 2^31 (RFC
// 9111 section 1.2.2 reads anything larger as 2147483648).
func ageValue(secs int64) []string {
	if secs >= 0 && secs < int64(len(ages)) {
		v := ages[secs]
		return v[:1:1]
	}
	return []string{strconv.FormatInt(min(max(secs, 0), maxDelta), 10)}
}

// writeHit answers from a stored entry, in the coding the client
// prefers when the entry is compressible (a Range request is answered
// from the identity body). Client conditionals are evaluated against
// it; HEAD gets the headers only.
func (c *Cache) writeHit(w http.ResponseWriter, r *http.Request, e *entry, age time.Duration, status []string) {
	hdr, body, etag := e.header, e.body, e.etag
	if e.enc != nil && c.comp != nil && len(r.Header["Range"]) == 0 {
		if enc := chooseEncoding(r.Header["Accept-Encoding"], c.comp.gzip, c.comp.brotli); enc != encIdentity {
			if v := c.variantFor(e, enc); v != nil {
				hdr, body = v.header, v.body
				if v.etag != "" {
					etag = v.etag
				}
			}
		}
	}
	h := w.Header()
	for k, v := range hdr {
		h[k] = v[:len(v):len(v)] // shared and read-only: an append copies
	}
	h["Age"] = ageValue(int64(age / time.Second))
	if c.forwardTags && len(e.tags) > 0 {
		h["Surrogate-Key"] = []string{strings.Join(e.tags, " ")}
	}
	if prev := h["Cache-Status"]; len(prev) > 0 {
		h["Cache-Status"] = append(prev[:len(prev):len(prev)], status...)
	} else {
		h["Cache-Status"] = status
	}
	if len(r.Header["Range"]) > 0 && e.status == http.StatusOK && rangeCount(r.Header["Range"]) <= MaxRanges {
		serveRange(w, r, e)
		return
	}
	code := e.status
	if notModified(r, e, etag) {
		code = http.StatusNotModified
		for _, k := range [...]string{"Content-Length", "Content-Type", "Content-Encoding"} {
			delete(h, k)
		}
	}
	httpx.RecordStatus(r, code)
	w.WriteHeader(code)
	if code != http.StatusNotModified && r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// rangeCount is how many ranges a Range header lists (its commas plus
// one), without parsing them.
func rangeCount(vs []string) int {
	n := 0
	for _, v := range vs {
		n += strings.Count(v, ",") + 1
	}
	return n
}

// serveRange answers a Range request from a stored full response
// (RFC 9110 section 14): 206 for one range, multipart/byteranges for
// several, 416 when none is satisfiable, the full 200 when If-Range does
// not match; net/http's ServeContent implements exactly that.
func serveRange(w http.ResponseWriter, r *http.Request, e *entry) {
	var mod time.Time
	if e.lastModified != "" {
		mod, _ = http.ParseTime(e.lastModified)
	}
	sw := &statusWriter{ResponseWriter: w}
	http.ServeContent(sw, r, "", mod, bytes.NewReader(e.body))
	httpx.RecordStatus(r, sw.code)
}

// statusWriter records the status written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// notModified evaluates the client's If-None-Match / If-Modified-Since
// against a stored 200 (RFC 9110 section 13.2.2) whose answer carries
// etag (an encoded variant's, or the entry's own). The entry's own tag
// matches too: the identity copy a client holds has the same content.
func notModified(r *http.Request, e *entry, etag string) bool {
	if e.status != http.StatusOK {
		return false
	}
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		list := strings.Join(inm, ",")
		return etag != "" && etagListMatches(list, etag) || etag != e.etag && e.etag != "" && etagListMatches(list, e.etag)
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" && e.lastModified != "" {
		t, err1 := http.ParseTime(ims)
		lm, err2 := http.ParseTime(e.lastModified)
		return err1 == nil && err2 == nil && !lm.After(t)
	}
	return false
}

// etagListMatches is the weak comparison of If-None-Match.
func etagListMatches(list, etag string) bool {
	want := strings.TrimPrefix(etag, "W/")
	for t := range strings.SplitSeq(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == want {
			return true
		}
	}
	return false
}

// pass forwards a request the cache does not take part in.
func (c *Cache) pass(next http.Handler, w http.ResponseWriter, r *http.Request, fwd string) {
	pw := &passWriter{ResponseWriter: w, status: c.status("fwd=" + fwd), keepTags: c.forwardTags}
	next.ServeHTTP(pw, r)
}

// unsafe forwards a request with an unsafe method and, when the answer
// is not an error, invalidates the target URI and the same-origin
// Location and Content-Location (RFC 9111 section 4.4).
func (c *Cache) unsafe(next http.Handler, w http.ResponseWriter, r *http.Request) {
	pw := &passWriter{ResponseWriter: w, status: c.status("fwd=method"), keepTags: c.forwardTags}
	defer func() {
		if pw.code >= 200 && pw.code < 400 {
			c.store.invalidate(uriOf(r.Host, r.URL.EscapedPath(), r.URL.RawQuery))
			for _, name := range [...]string{"Location", "Content-Location"} {
				if v := pw.header.Get(name); v != "" {
					if u, err := r.URL.Parse(v); err == nil && (u.Host == "" || strings.EqualFold(u.Host, r.Host)) {
						c.store.invalidate(uriOf(r.Host, u.EscapedPath(), u.RawQuery))
					}
				}
			}
		}
	}()
	next.ServeHTTP(pw, r)
}

// fetchArgs describe one trip to the origin.
type fetchArgs struct {
	key    string
	stale  *entry // the stored entry being validated, if any
	fwd    string // Cache-Status fwd reason
	rq     Directives
	flight *flight
}

// overrideHeaders are request fields that common origin frameworks read
// as the request's host, scheme, port, URL or method (Symfony, Rails,
// Django, IIS URL Rewrite, method-override middleware). A cache that
// forwards them unkeyed lets one client's value shape the response
// stored for everyone (cache poisoning), so a request that may fill the
// cache reaches the origin without them unless the key names them
// (header:NAME). The gateway's proxy sets X-Forwarded-Host and
// X-Forwarded-Proto again from the request it received.
var overrideHeaders = [...]string{
	"X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Scheme", "X-Forwarded-Port", "X-Forwarded-Server",
	"X-Forwarded-Prefix", "X-Forwarded-Ssl", "Forwarded", "X-Host", "X-Original-Host", "X-Original-Url", "X-Rewrite-Url",
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "Front-End-Https", "X-Url-Scheme",
}

// originRequest is r as it goes to the origin to fill or validate an
// entry: without the client's cache validators (the cache wants a full
// answer it can store) and, when validating stale, with the stored
// entry's; without the unkeyed override headers (overrideHeaders); and,
// when the key lists query parameters (query:NAME) but not the whole
// query, with only those parameters, so the origin never sees input the
// key does not hold.
func (c *Cache) originRequest(r *http.Request, stale *entry) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	r2.Header = r.Header.Clone()
	r2.Header.Del("If-None-Match")
	r2.Header.Del("If-Modified-Since")
	for _, k := range overrideHeaders {
		if _, ok := r2.Header[k]; ok && !c.keyed[k] {
			delete(r2.Header, k)
		}
	}
	if !c.wholeQuery && r.URL.RawQuery != "" {
		u := *r.URL
		u.RawQuery = c.keyedQuery(r.URL.RawQuery)
		u.ForceQuery = false
		r2.URL = &u
		if r2.RequestURI != "" {
			r2.RequestURI = u.RequestURI()
		}
	}
	if stale != nil {
		if stale.etag != "" {
			r2.Header.Set("If-None-Match", stale.etag)
		}
		if stale.lastModified != "" {
			r2.Header.Set("If-Modified-Since", stale.lastModified)
		}
	}
	return r2
}

// fetch forwards r to the origin, streaming the answer to the client
// while keeping a copy to store when it is storable; a 304 to a
// validation, or an error within stale-if-error, is answered from the
// stale entry instead.
func (c *Cache) fetch(next http.Handler, w http.ResponseWriter, r *http.Request, a fetchArgs) {
	if a.stale != nil && (a.stale.etag != "" || a.stale.lastModified != "") {
		c.store.revalidations.Add(1)
	}
	or := c.originRequest(r, a.stale)
	tw := &teeWriter{c: c, w: w, r: r, a: a, reqTime: time.Now(), pre: len(w.Header())}
	tw.preKeys = make(map[string]bool, len(w.Header()))
	for k := range w.Header() {
		tw.preKeys[k] = true
	}
	completed := false
	defer func() {
		if !completed {
			tw.abandon() // a panic (an aborted response): nothing is stored
		}
	}()
	next.ServeHTTP(tw, or)
	completed = true
	tw.finish()
}

// revalidateInBackground starts one background revalidation of key,
// unless one is running.
func (c *Cache) revalidateInBackground(next http.Handler, r *http.Request, key string, e *entry) {
	s := c.store
	s.mu.Lock()
	if _, running := s.revals[key]; running {
		s.mu.Unlock()
		return
	}
	s.revals[key] = struct{}{}
	s.mu.Unlock()
	c.store.revalidations.Add(1)

	req := c.originRequest(r, e)
	req.Body = http.NoBody
	req.ContentLength = 0
	req.Method = http.MethodGet
	u := *r.URL
	req.URL = &u
	rec := &recorder{header: http.Header{}, limit: s.maxObject}
	ctx, cancel := context.WithTimeout(c.ctx, BackgroundTimeout)
	req = req.WithContext(context.WithValue(ctx, bgKey{}, rec))
	var h http.Handler = next
	if p := c.background.Load(); p != nil && *p != nil {
		h = *p
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		defer func() {
			s.mu.Lock()
			delete(s.revals, key)
			s.mu.Unlock()
		}()
		defer func() { _ = recover() }() // an aborted origin answer changes nothing
		reqTime := time.Now()
		if h == next {
			next.ServeHTTP(rec, req)
		} else {
			h.ServeHTTP(discard{}, req)
		}
		if !rec.wrote {
			return
		}
		now := time.Now()
		switch {
		case rec.code == http.StatusNotModified:
			if u := c.merge(e, rec.header, reqTime, now); u != nil && u.storable {
				s.replace(e, u.e)
			} else if u != nil {
				s.drop(e)
			}
		case rec.code < 500:
			if p := c.prepare(req, key, rec.code, rec.header, reqTime, now); p.storable && !rec.tooBig {
				c.setBody(p.e, slab(rec.body.Bytes()))
				s.insert(p.e)
			}
		}
	}()
}

// flight is one origin fetch others wait for.
type flight struct {
	done   chan struct{}
	once   sync.Once
	stored bool // set before done closes: the answer was stored
}

// join returns the key's flight and whether the caller leads it.
func (s *Store) join(key string) (*flight, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.flights[key]; f != nil {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	s.flights[key] = f
	return f, true
}

// land ends the flight: waiters wake and look again (they find the
// stored entry, or go to the origin themselves). Safe to call twice.
func (f *flight) land(s *Store, key string) {
	f.once.Do(func() {
		s.mu.Lock()
		if s.flights[key] == f {
			delete(s.flights, key)
		}
		s.mu.Unlock()
		close(f.done)
	})
}

// newID is a random float in [0,1) for jitter.
func jitter(d time.Duration, share float64) time.Duration {
	if share <= 0 || d <= 0 {
		return d
	}
	return d - time.Duration(rand.Float64()*share*float64(d))
}

// keyedQuery keeps, of a raw query, the parameters the key lists
// (query:NAME), in their order; the others are dropped.
func (c *Cache) keyedQuery(raw string) string {
	var b strings.Builder
	for part := range strings.SplitSeq(raw, "&") {
		if strings.Contains(part, ";") {
			continue // url.ParseQuery (the key's reading) skips it too
		}
		name, val, _ := strings.Cut(part, "=")
		n, err := url.QueryUnescape(name)
		if _, err2 := url.QueryUnescape(val); err == nil && err2 == nil && slices.Contains(c.queryParams, n) {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(part)
		}
	}
	return b.String()
}
