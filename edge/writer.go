package edge

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/andybalholm/brotli"
	"golang.org/x/net/http/httpguts"
)

// hopHeaders are never stored (RFC 9111 section 3.1), nor are the
// fields this cache writes itself or strips before the client.
var hopHeaders = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Proxy-Authenticate", "Proxy-Authentication-Info",
	"Age", "Cache-Status", "Cdn-Cache-Control", "Surrogate-Control", "Surrogate-Key", "Cache-Tag",
}

// stripForClient removes the fields meant for this cache only (RFC 9213:
// the targeted fields) and, unless the cache forwards them to caches
// behind it (Options.ForwardTags), the purge tags.
func stripForClient(h http.Header, keepTags bool) {
	delete(h, "Cdn-Cache-Control")
	delete(h, "Surrogate-Control")
	if !keepTags {
		delete(h, "Surrogate-Key")
		delete(h, "Cache-Tag")
	}
}

// addStatus appends this cache's Cache-Status member after any from
// caches nearer the origin (RFC 9211 section 2).
func addStatus(h http.Header, status []string) {
	if prev := h["Cache-Status"]; len(prev) > 0 {
		h["Cache-Status"] = append(prev[:len(prev):len(prev)], status...)
	} else {
		h["Cache-Status"] = status
	}
}

// passWriter forwards an answer the cache does not store, adding
// Cache-Status and stripping the targeted fields.
type passWriter struct {
	http.ResponseWriter
	status   []string
	keepTags bool
	code     int
	header   http.Header
}

func (p *passWriter) WriteHeader(code int) {
	if p.code == 0 && code >= 200 {
		p.code = code
		h := p.ResponseWriter.Header()
		p.header = h
		stripForClient(h, p.keepTags)
		addStatus(h, p.status)
	}
	p.ResponseWriter.WriteHeader(code)
}

func (p *passWriter) Write(b []byte) (int, error) {
	if p.code == 0 {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriter.Write(b)
}

// Flush sends buffered data to the client.
func (p *passWriter) Flush() { _ = http.NewResponseController(p.ResponseWriter).Flush() }

// Unwrap exposes the client's writer to http.ResponseController.
func (p *passWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// teeWriter streams the origin's answer to the client while keeping a
// copy to store, or swallows it when the client is answered from the
// stale entry (a 304 to the cache's validation, or stale-if-error).
type teeWriter struct {
	c       *Cache
	w       http.ResponseWriter
	r       *http.Request
	a       fetchArgs
	reqTime time.Time
	pre     int
	preKeys map[string]bool

	code        int
	swallow     bool   // the client was answered from the stored entry
	pending     *entry // the entry being filled, nil when not storing
	buf         []byte
	notModified bool    // the client's own validators matched: no body
	zw          zwriter // compresses the answer to the client, nil when identity
	failed      bool    // a write to the client failed
}

func (t *teeWriter) Header() http.Header { return t.w.Header() }

// originHeader copies what the origin (not the gateway's outer layers)
// put in the response header.
func (t *teeWriter) originHeader() http.Header {
	h := t.w.Header()
	out := make(http.Header, len(h))
	for k, v := range h {
		if !t.preKeys[k] {
			out[k] = v
		}
	}
	return out
}

// clearOrigin removes what the origin put in the response header.
func (t *teeWriter) clearOrigin() {
	h := t.w.Header()
	for k := range h {
		if !t.preKeys[k] {
			delete(h, k)
		}
	}
}

func (t *teeWriter) WriteHeader(code int) {
	if t.code != 0 {
		return
	}
	if code < 200 {
		t.w.WriteHeader(code) // informational: passes through
		return
	}
	t.code = code
	now := time.Now()
	st := t.a.stale
	if st != nil && code == http.StatusNotModified {
		if u := t.c.merge(st, t.originHeader(), t.reqTime, now); u != nil {
			t.swallow = true
			t.clearOrigin()
			if u.storable {
				t.c.store.replace(st, u.e)
				if t.a.flight != nil {
					t.a.flight.stored = true
				}
			} else {
				t.c.store.drop(st)
			}
			t.c.writeHit(t.w, t.r, u.e, u.e.age(now), t.c.status("fwd="+t.a.fwd, "fwd-status=304"))
			return
		}
	}
	if st != nil && code >= 500 && !st.mustRevalidate && !st.noCache {
		window := st.sie
		if t.a.rq.StaleIfError >= 0 {
			window = max(window, time.Duration(t.a.rq.StaleIfError)*time.Second)
		}
		age := st.age(now)
		if age-st.lifetime <= window {
			t.swallow = true
			t.clearOrigin()
			t.c.store.stale.Add(1)
			t.c.writeHit(t.w, t.r, st, age, t.c.status("fwd=stale", "fwd-status="+strconv.Itoa(code), "detail=stale-if-error"))
			return
		}
	}
	h := t.w.Header()
	var p prepared
	if t.r.Method == http.MethodGet {
		p = t.c.prepare(t.r, t.a.key, code, t.originHeader(), t.reqTime, now)
	}
	if p.storable {
		if cl := h.Get("Content-Length"); cl != "" {
			if n, err := strconv.ParseInt(cl, 10, 64); err != nil || n < 0 || n > t.c.store.maxObject {
				p.storable = false
			} else {
				// The copy is made at its final size at once: growing it
				// by appends left each stored object's discarded smaller
				// copies behind (about as much garbage again as body,
				// which the heap kept until the next GC). A declared
				// length is the origin's word, so only so much is
				// reserved before the bytes arrive.
				t.buf = make([]byte, 0, min(n, maxPrealloc))
			}
		}
	}
	params := []string{"fwd=" + t.a.fwd, "fwd-status=" + strconv.Itoa(code)}
	compressible := false
	if p.storable {
		t.pending = p.e
		params = append(params, "stored")
		if compressible = t.c.comp.mayCompress(code, h); compressible {
			h["Vary"] = append(h["Vary"][:len(h["Vary"]):len(h["Vary"])], "Accept-Encoding")
		}
	} else {
		t.release()
	}
	stripForClient(h, t.c.forwardTags)
	addStatus(h, t.c.status(params...))
	if code == http.StatusOK && t.pending != nil && notModified(t.r, t.pending, t.pending.etag) {
		t.notModified = true
		for _, k := range [...]string{"Content-Length", "Content-Type", "Content-Encoding"} {
			delete(h, k)
		}
		code = http.StatusNotModified
	}
	if compressible && !t.notModified && t.r.Method == http.MethodGet && len(t.r.Header["Range"]) == 0 {
		if enc := chooseEncoding(t.r.Header["Accept-Encoding"], t.c.comp.gzip, t.c.comp.brotli); enc != encIdentity {
			t.startCompress(enc, h)
		}
	}
	t.w.WriteHeader(code)
}

// zwriter is a streaming compressor (gzip or brotli).
type zwriter interface {
	io.WriteCloser
	Flush() error
}

// startCompress sends the answer being stored encoded: the client that
// fills the cache gets the coding it asked for too (the stored copy is
// the identity body; hits get variants built from it).
func (t *teeWriter) startCompress(enc int, h http.Header) {
	delete(h, "Content-Length")
	delete(h, "Accept-Ranges")
	h["Content-Encoding"] = []string{encNames[enc]}
	if et := h.Get("Etag"); et != "" {
		h["Etag"] = []string{suffixETag(et, encNames[enc])}
	}
	switch enc {
	case encBrotli:
		t.zw = brotli.NewWriterLevel(t.w, BrotliQuality)
	default:
		t.zw = gzip.NewWriter(t.w)
	}
}

// release lets coalesced waiters go: nothing will be stored.
func (t *teeWriter) release() {
	t.pending, t.buf = nil, nil
	if t.a.flight != nil {
		t.a.flight.land(t.c.store, t.a.key)
	}
}

func (t *teeWriter) Write(b []byte) (int, error) {
	if t.code == 0 {
		t.WriteHeader(http.StatusOK)
	}
	if t.swallow {
		return len(b), nil
	}
	if t.pending != nil {
		if int64(len(t.buf)+len(b)) > t.c.store.maxObject {
			t.release() // too large: stream the rest through, uncached
		} else {
			t.buf = append(t.buf, b...)
		}
	}
	if t.notModified || t.r.Method == http.MethodHead {
		return len(b), nil
	}
	if t.zw != nil {
		if _, err := t.zw.Write(b); err != nil {
			t.failed = true
			return 0, err
		}
		return len(b), nil
	}
	n, err := t.w.Write(b)
	if err != nil {
		t.failed = true
	}
	return n, err
}

// Flush sends buffered data to the client.
func (t *teeWriter) Flush() {
	if t.zw != nil {
		_ = t.zw.Flush()
	}
	if !t.swallow && !t.notModified {
		_ = http.NewResponseController(t.w).Flush()
	}
}

// Unwrap exposes the client's writer to http.ResponseController.
func (t *teeWriter) Unwrap() http.ResponseWriter { return t.w }

// finish stores the copy when the whole body arrived.
func (t *teeWriter) finish() {
	if t.code == 0 {
		t.WriteHeader(http.StatusOK)
	}
	if t.zw != nil {
		if err := t.zw.Close(); err != nil {
			t.failed = true
		}
		t.zw = nil
	}
	e := t.pending
	if e == nil || t.failed || t.r.Context().Err() != nil {
		t.release()
		return
	}
	if cl := e.header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(t.buf)) {
		t.release() // truncated
		return
	}
	t.c.setBody(e, slab(t.buf))
	if t.c.store.insert(e) && t.a.flight != nil {
		t.a.flight.stored = true
	}
	t.pending, t.buf = nil, nil
}

// maxPrealloc bounds the body copy reserved from a declared
// Content-Length before any of the body arrived.
const maxPrealloc = 4 << 20

// slab returns b in a slice of exactly its length: b itself when it has
// no spare capacity, otherwise a copy (a body whose length was not
// declared, or was declared over maxPrealloc), so a stored body holds no
// unused tail for as long as it is cached.
func slab(b []byte) []byte {
	if cap(b) == len(b) {
		return b
	}
	s := make([]byte, len(b))
	copy(s, b)
	return s
}

// abandon drops the copy after an aborted response.
func (t *teeWriter) abandon() { t.release() }

// recorder takes a background revalidation's answer.
type recorder struct {
	header http.Header
	code   int
	wrote  bool
	body   bytes.Buffer
	limit  int64
	tooBig bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote && code >= 200 {
		r.code, r.wrote = code, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.tooBig || int64(r.body.Len()+len(b)) > r.limit {
		r.tooBig = true
		r.body.Reset()
		return len(b), nil
	}
	return r.body.Write(b)
}

// discard is the client writer of a background request.
type discard struct{ h http.Header }

func (d discard) Header() http.Header {
	if d.h == nil {
		return http.Header{}
	}
	return d.h
}
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// prepared is a response's storage decision and the entry it would be.
type prepared struct {
	e        *entry
	storable bool
}

// heuristicStatus are the status codes heuristically cacheable (RFC 9110
// section 15.1), less 206 (partial content is not stored).
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// prepare decides whether the answer to r may be stored (RFC 9111
// section 3) and computes the entry without its body. hdr is the
// origin's header, owned by the entry from here on.
func (c *Cache) prepare(r *http.Request, key string, code int, hdr http.Header, reqTime, respTime time.Time) prepared {
	if r.Method != http.MethodGet || code == http.StatusPartialContent || code == http.StatusNotModified {
		return prepared{}
	}
	if len(hdr["Set-Cookie"]) > 0 && !c.pol.AllowSetCookie {
		return prepared{}
	}
	vary, ok := parseVary(hdr["Vary"])
	if !ok {
		return prepared{}
	}
	// Heuristic freshness (default_ttl, or 10% of the time since
	// Last-Modified) is the cache's guess, not the origin's word: it is
	// not used for a request that carried a Cookie, so a personal page
	// behind a static-looking URL (/account.css, cache deception) is not
	// stored unless the origin said it may be.
	p := c.meta(code, hdr, reqTime, respTime, len(r.Header["Cookie"]) == 0)
	if !p.storable {
		return prepared{}
	}
	if len(r.Header["Authorization"]) > 0 && !(p.dir.Public || p.dir.SMaxAge >= 0 || p.dir.MustRevalidate) {
		return prepared{} // RFC 9111 section 3.5
	}
	e := p.e
	e.key = key
	e.uri = uriOf(r.Host, r.URL.EscapedPath(), r.URL.RawQuery)
	e.vary = vary
	e.varyVals = make([]string, len(vary))
	for i, name := range vary {
		e.varyVals[i] = normalizedHeader(r.Header, name)
	}
	return prepared{e: e, storable: true}
}

// metaResult is the freshness computed from a response header.
type metaResult struct {
	prepared
	dir Directives
}

// meta computes the stored form of a response header: its directives
// (CDN-Cache-Control, then Surrogate-Control, then Cache-Control),
// freshness lifetime, initial age, stale windows, validators and tags.
func (c *Cache) meta(code int, hdr http.Header, reqTime, respTime time.Time, heuristicOK bool) metaResult {
	var d Directives
	useExpires := false
	switch {
	case len(hdr["Cdn-Cache-Control"]) > 0: // RFC 9213: replaces Cache-Control and Expires here
		d = ParseDirectives(hdr["Cdn-Cache-Control"])
	case len(hdr["Surrogate-Control"]) > 0:
		d = ParseDirectives(hdr["Surrogate-Control"])
	default:
		d = ParseDirectives(hdr["Cache-Control"])
		useExpires = true
	}
	res := metaResult{dir: d}
	if d.NoStore && !(d.MustUnderstand && (heuristicStatus(code) || code == 302 || code == 307)) {
		return res
	}
	if d.Private {
		return res
	}
	date, err := http.ParseTime(hdr.Get("Date"))
	if err != nil {
		date = respTime
		hdr.Set("Date", respTime.UTC().Format(http.TimeFormat))
	}
	var lifetime time.Duration
	explicit := true
	switch {
	case d.Invalid:
		lifetime = 0
	case d.SMaxAge >= 0:
		lifetime = time.Duration(d.SMaxAge) * time.Second
	case d.MaxAge >= 0:
		lifetime = time.Duration(d.MaxAge) * time.Second
	case useExpires && len(hdr["Expires"]) > 0:
		if exp, err := http.ParseTime(hdr.Get("Expires")); err == nil {
			lifetime = min(max(0, exp.Sub(date)), maxDelta*time.Second)
		}
	default:
		explicit = false
	}
	if !explicit {
		if !heuristicStatus(code) && !d.Public || !heuristicOK {
			return res
		}
		if c.pol.DefaultTTL > 0 {
			lifetime = c.pol.DefaultTTL
		} else if lm, err := http.ParseTime(hdr.Get("Last-Modified")); err == nil && lm.Before(date) {
			lifetime = min(date.Sub(lm)/10, HeuristicMax)
		}
	}
	lifetime = jitter(lifetime, float64(c.pol.TTLJitter))
	swr, sie := c.pol.StaleWhileRevalidate, c.pol.StaleIfError
	if d.StaleWhileRevalidate >= 0 {
		swr = time.Duration(d.StaleWhileRevalidate) * time.Second
	}
	if d.StaleIfError >= 0 {
		sie = time.Duration(d.StaleIfError) * time.Second
	}
	etag, lm := hdr.Get("Etag"), hdr.Get("Last-Modified")
	if lifetime <= 0 && etag == "" && lm == "" && swr == 0 && sie == 0 {
		return res // nothing could ever reuse it
	}
	for _, f := range d.PrivateFields {
		hdr.Del(f)
	}
	var ageValue int64
	if a, ok := parseDelta(strings.TrimSpace(hdr.Get("Age"))); ok {
		ageValue = a
	}
	// Ages are bounded by 2^31 seconds (RFC 9111 section 1.2.2): a Date
	// centuries ago must not make the sum of ages overflow (negative: a
	// response stale from the start served as fresh forever).
	apparent := min(max(0, respTime.Sub(date)), maxDelta*time.Second)
	corrected := time.Duration(ageValue)*time.Second + min(max(0, respTime.Sub(reqTime)), maxDelta*time.Second)
	tags := parseTags(hdr["Surrogate-Key"], hdr["Cache-Tag"])
	for _, v := range hdr["Connection"] { // fields named by Connection are hop-by-hop too
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				hdr.Del(k)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(hdr, k)
	}
	res.e = &entry{
		status: code, header: hdr, tags: tags,
		reqTime: reqTime, respTime: respTime,
		initialAge: max(apparent, corrected), lifetime: lifetime, swr: swr, sie: sie,
		noCache: d.NoCache, mustRevalidate: d.MustRevalidate || d.ProxyRevalidate, sMaxAge: d.SMaxAge >= 0,
		etag: etag, lastModified: lm,
	}
	res.storable = true
	return res
}

// setBody attaches the body, readies the entry for compression and
// computes its size.
func (c *Cache) setBody(e *entry, b []byte) {
	e.body = b
	e.header["Content-Length"] = []string{strconv.Itoa(len(b))}
	c.comp.markCompressible(e)
	e.computeSize()
}

// computeSize sets the entry's size from its key, headers and body.
func (e *entry) computeSize() {
	b := e.body
	size := int64(entryOverhead + len(e.key) + len(e.uri) + len(b))
	for k, vs := range e.header {
		size += int64(len(k))
		for _, v := range vs {
			size += int64(len(v)) + 16
		}
	}
	for _, v := range e.varyVals {
		size += int64(len(v))
	}
	for _, t := range e.tags {
		size += int64(len(t)) + 16
	}
	e.size = size
}

// merged is a stale entry updated by a 304.
type merged struct {
	e        *entry
	storable bool
}

// merge applies a 304's header to a stored entry (RFC 9111 sections
// 3.2 and 4.3.4). It returns nil when the 304 names another
// representation (a different strong validator).
func (c *Cache) merge(st *entry, h304 http.Header, reqTime, now time.Time) *merged {
	if et := h304.Get("Etag"); et != "" && st.etag != "" && et != st.etag {
		return nil
	}
	hdr := st.header.Clone()
	for k, v := range h304 {
		if k == "Content-Length" || k == "Set-Cookie" && !c.pol.AllowSetCookie {
			continue
		}
		hdr[k] = v
	}
	for _, k := range hopHeaders {
		delete(hdr, k)
	}
	// The stored tags travel with the entry; the 304 may name new ones.
	if len(h304["Surrogate-Key"]) == 0 && len(h304["Cache-Tag"]) == 0 && len(st.tags) > 0 {
		hdr["Surrogate-Key"] = []string{strings.Join(st.tags, " ")}
	}
	m := c.meta(st.status, hdr, reqTime, now, true)
	if m.e == nil {
		// Now uncacheable: answer this once from the merged entry, drop it.
		e := *st
		e.header = hdr
		e.elem = nil
		e.initialAge, e.respTime = 0, now
		return &merged{e: &e}
	}
	e := m.e
	e.key, e.uri, e.vary, e.varyVals = st.key, st.uri, st.vary, st.varyVals
	c.setBody(e, st.body)
	return &merged{e: e, storable: true}
}

var _ http.Flusher = (*teeWriter)(nil)

// MaxVaryFields bounds the fields a stored response may vary on; a
// response naming more is not stored (ignoring a field would select
// wrong variants).
const MaxVaryFields = 16

// parseVary reads a response's Vary field lines into canonical header
// names. It reports false when the response must not be stored: Vary: *
// (it never matches, RFC 9111 section 4.1) or more than MaxVaryFields
// names. A name listed twice counts once.
func parseVary(lines []string) ([]string, bool) {
	var vary []string
	for _, v := range lines {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "*" {
				return nil, false
			}
			if name == "" {
				continue
			}
			if !httpguts.ValidHeaderFieldName(name) {
				return nil, false // not a field name: nothing to select on
			}
			name = http.CanonicalHeaderKey(name)
			if slices.Contains(vary, name) {
				continue
			}
			if len(vary) == MaxVaryFields {
				return nil, false
			}
			vary = append(vary, name)
		}
	}
	return vary, true
}

// MaxTags bounds the purge tags kept per entry, and MaxTagLen the
// length of one; longer tags are dropped, tags past MaxTags ignored.
const (
	MaxTags   = 64
	MaxTagLen = 256
)

// parseTags reads the purge tags of a response: Surrogate-Key
// (space-separated) and Cache-Tag (comma-separated), each kept once, at
// most MaxTags of at most MaxTagLen bytes, none with a space or a control
// character (a tag is one word, so it survives being written back as a
// space-separated Surrogate-Key).
func parseTags(surrogateKey, cacheTag []string) []string {
	var tags []string
	add := func(t string) bool {
		if t == "" || len(t) > MaxTagLen || strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r == 0x7f }) || slices.Contains(tags, t) {
			return true
		}
		tags = append(tags, t)
		return len(tags) < MaxTags
	}
	for _, v := range surrogateKey {
		for t := range strings.FieldsSeq(v) {
			if !add(t) {
				return tags
			}
		}
	}
	for _, v := range cacheTag {
		for t := range strings.SplitSeq(v, ",") {
			if !add(strings.TrimSpace(t)) {
				return tags
			}
		}
	}
	return tags
}
