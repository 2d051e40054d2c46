package edge

import (
	"bytes"
	"compress/gzip"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"

	"github.com/switchyard/switchyard/config"
)

// DefaultCompressTypes are the media types compressed when a compress
// block lists none. A trailing "/*" matches every subtype; "+json" and
// "+xml" suffixed types (application/ld+json, image/svg+xml) match too.
var DefaultCompressTypes = []string{
	"text/*", "application/json", "application/javascript", "application/x-javascript",
	"application/xml", "image/svg+xml", "application/wasm", "application/manifest+json",
}

// DefaultCompressMinSize is the smallest body compressed when min_size is 0.
const DefaultCompressMinSize = 1024

// BrotliQuality is the brotli level variants are built with (0-11): 5
// is within a few percent of 11's size at a fraction of the CPU.
const BrotliQuality = 5

// Compress is a cache's compression settings (the YAML block
// caches.NAME.compress). A stored identity response of a listed type, at
// least MinSize bytes, that the origin did not encode, is compressed
// once per encoding on the first hit that accepts it; the encoded copy
// is kept with the entry (and counted against memory).
type Compress struct {
	// Gzip and Brotli enable the encodings; brotli is preferred when the
	// client weighs both the same.
	Gzip   bool `yaml:"gzip"`
	Brotli bool `yaml:"brotli"`
	// Types are media types ("text/html") or "type/*"; DefaultCompressTypes when empty.
	Types []string `yaml:"types"`
	// MinSize is the smallest body compressed. Default 1KiB.
	MinSize config.ByteSize `yaml:"min_size"`
}

// Validate reports every problem, each as a *config.FieldError at its key.
func (c *Compress) Validate() error {
	var errs []error
	if !c.Gzip && !c.Brotli {
		errs = append(errs, config.Fieldf("", "enables no encoding: set gzip: true and/or brotli: true (or remove the block)"))
	}
	for i, t := range c.Types {
		typ, sub, ok := strings.Cut(t, "/")
		if !ok || !validToken(typ) || sub != "*" && !validToken(sub) {
			errs = append(errs, config.Fieldf("types["+itoa(i)+"]", "%q is not a media type: expected type/subtype or type/*", t))
		}
	}
	if c.MinSize < 0 {
		errs = append(errs, config.Fieldf("min_size", "must not be negative"))
	}
	return errors.Join(errs...)
}

// Encodings a variant may have, indexes into entry.enc.
const (
	encBrotli = iota
	encGzip
	numEnc
	encIdentity = -1
)

var encNames = [numEnc]string{"br", "gzip"}

// compressor is a Cache's compiled Compress block.
type compressor struct {
	gzip, brotli bool
	exact        map[string]bool // "text/html"
	prefixes     []string        // "text/" from "text/*"
	minSize      int
}

func newCompressor(c *Compress) *compressor {
	if c == nil {
		return nil
	}
	cp := &compressor{gzip: c.Gzip, brotli: c.Brotli, exact: map[string]bool{}, minSize: int(c.MinSize)}
	if cp.minSize == 0 {
		cp.minSize = DefaultCompressMinSize
	}
	types := c.Types
	if len(types) == 0 {
		types = DefaultCompressTypes
	}
	for _, t := range types {
		t = strings.ToLower(t)
		if p, ok := strings.CutSuffix(t, "/*"); ok {
			cp.prefixes = append(cp.prefixes, p+"/")
		} else {
			cp.exact[t] = true
		}
	}
	return cp
}

// typeMatches reports whether a Content-Type value is compressible.
func (cp *compressor) typeMatches(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if cp.exact[mt] || strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml") {
		return true
	}
	for _, p := range cp.prefixes {
		if strings.HasPrefix(mt, p) {
			return true
		}
	}
	return false
}

// eligible reports whether a stored entry may be compressed: a 200 of a
// listed type, at least min_size, not encoded by the origin, and not
// no-transform.
func (cp *compressor) eligible(e *entry) bool {
	if cp == nil || len(e.body) < cp.minSize {
		return false
	}
	return cp.eligibleHeader(e)
}

// eligibleHeader is eligible without the size check.
func (cp *compressor) eligibleHeader(e *entry) bool {
	if e.status != http.StatusOK {
		return false
	}
	if ce := e.header["Content-Encoding"]; len(ce) > 0 && !(len(ce) == 1 && strings.EqualFold(strings.TrimSpace(ce[0]), "identity")) {
		return false
	}
	if len(e.header["Content-Range"]) > 0 {
		return false
	}
	for _, v := range e.header["Cache-Control"] {
		if strings.Contains(strings.ToLower(v), "no-transform") {
			return false
		}
	}
	ct := e.header["Content-Type"]
	return len(ct) == 1 && cp.typeMatches(ct[0])
}

// mayCompress reports, from a storable answer's header alone, whether
// its stored entry may be compressed later: the answer sent now then
// needs Vary: Accept-Encoding too.
func (cp *compressor) mayCompress(code int, h http.Header) bool {
	if cp == nil {
		return false
	}
	e := entry{status: code, header: h}
	if cl := h.Get("Content-Length"); cl != "" {
		if n, err := strconv.Atoi(cl); err == nil && n < cp.minSize {
			return false
		}
	}
	return cp.eligibleHeader(&e) && !varyHasAE(h)
}

func varyHasAE(h http.Header) bool {
	for _, v := range h["Vary"] {
		for name := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(name), "Accept-Encoding") {
				return true
			}
		}
	}
	return false
}

// markCompressible readies an entry for encoded variants: the identity
// answer now also says Vary: Accept-Encoding (RFC 9110 section 12.5.5),
// since what is sent depends on it. It is not a secondary key: one entry
// serves every Accept-Encoding.
func (cp *compressor) markCompressible(e *entry) {
	if !cp.eligible(e) {
		return
	}
	e.enc = &encodings{}
	if varyHasAE(e.header) {
		return
	}
	e.header["Vary"] = append(e.header["Vary"][:len(e.header["Vary"]):len(e.header["Vary"])], "Accept-Encoding")
}

// encodings holds an entry's encoded variants, each built once.
type encodings struct {
	mu sync.Mutex
	v  [numEnc]*variant
}

// variant is an entry's body in one content coding, with the header sent with it.
type variant struct {
	header http.Header
	body   []byte
	etag   string
}

// chooseEncoding picks the coding to answer with from an Accept-Encoding
// header's field lines (RFC 9110 section 12.5.3): the enabled coding with
// the highest qvalue above 0, brotli before gzip on a tie, "x-gzip" as
// gzip, "*" for codings not listed. encIdentity when none is acceptable
// or the header is absent; identity is sent even when the client refuses
// it (identity;q=0), which the RFC allows instead of a 415.
func chooseEncoding(lines []string, gzipOn, brotliOn bool) int {
	if len(lines) == 0 {
		return encIdentity
	}
	qBr, qGz, qStar := -1, -1, -1 // thousandths; -1 unlisted
	for _, line := range lines {
		for elem := range strings.SplitSeq(line, ",") {
			name, params, _ := strings.Cut(elem, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			q, ok := parseQ(params)
			if !ok {
				continue // malformed: ignored
			}
			switch name {
			case "br":
				qBr = max(qBr, q)
			case "gzip", "x-gzip":
				qGz = max(qGz, q)
			case "*":
				qStar = max(qStar, q)
			}
		}
	}
	if qBr < 0 {
		qBr = qStar
	}
	if qGz < 0 {
		qGz = qStar
	}
	if !brotliOn {
		qBr = 0
	}
	if !gzipOn {
		qGz = 0
	}
	switch {
	case qBr > 0 && qBr >= qGz:
		return encBrotli
	case qGz > 0:
		return encGzip
	}
	return encIdentity
}

// parseQ reads the parameters after a coding (";q=0.5") and returns the
// qvalue in thousandths, 1000 when absent. A malformed qvalue is not ok.
func parseQ(params string) (int, bool) {
	q := 1000
	for p := range strings.SplitSeq(params, ";") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue // other parameters are ignored
		}
		v = strings.TrimSpace(v)
		n, ok := qvalue(v)
		if !ok {
			return 0, false
		}
		q = n
	}
	return q, true
}

// qvalue parses ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
func qvalue(v string) (int, bool) {
	if v == "" || len(v) > 5 || (v[0] != '0' && v[0] != '1') {
		return 0, false
	}
	whole := int(v[0] - '0')
	frac := v[1:]
	if frac != "" {
		if frac[0] != '.' {
			return 0, false
		}
		frac = frac[1:]
	}
	n := 0
	for i := 0; i < 3; i++ {
		n *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n += int(c - '0')
		}
	}
	if whole == 1 && n != 0 {
		return 0, false
	}
	return whole*1000 + n, true
}

// variantFor returns the entry's variant in coding enc, building it on
// first use and charging its bytes to the store. nil when the coding
// does not pay (the encoded body is not smaller).
func (c *Cache) variantFor(e *entry, enc int) *variant {
	en := e.enc
	en.mu.Lock()
	defer en.mu.Unlock()
	if v := en.v[enc]; v != nil {
		if v.body == nil {
			return nil
		}
		return v
	}
	var buf bytes.Buffer
	buf.Grow(len(e.body) / 3)
	switch enc {
	case encBrotli:
		w := brotli.NewWriterLevel(&buf, BrotliQuality)
		_, _ = w.Write(e.body)
		_ = w.Close()
	case encGzip:
		w := gzip.NewWriter(&buf)
		_, _ = w.Write(e.body)
		_ = w.Close()
	}
	if buf.Len() >= len(e.body) {
		en.v[enc] = &variant{} // remembered: not worth it
		return nil
	}
	body := bytes.Clone(buf.Bytes())
	h := make(http.Header, len(e.header)+1)
	for k, vs := range e.header {
		h[k] = vs
	}
	h["Content-Encoding"] = []string{encNames[enc]}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	delete(h, "Accept-Ranges") // ranges are served from the identity body
	v := &variant{header: h, body: body}
	if e.etag != "" {
		v.etag = suffixETag(e.etag, encNames[enc])
		h["Etag"] = []string{v.etag}
	}
	en.v[enc] = v
	c.store.grow(e, int64(len(body))+int64(len(v.etag))+64)
	return v
}

// suffixETag makes a distinct entity tag for an encoded variant, as a
// representation of its own must have: "abc" becomes "abc-gzip", keeping
// a weak tag weak.
func suffixETag(etag, coding string) string {
	if strings.HasSuffix(etag, `"`) && len(etag) >= 2 {
		return etag[:len(etag)-1] + "-" + coding + `"`
	}
	return etag
}
