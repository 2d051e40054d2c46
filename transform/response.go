package transform

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// DefaultMaxBody is the default Response.MaxBody: 1 MiB.
const DefaultMaxBody = 1 << 20

// MaxMaxBody bounds Response.MaxBody: each filtered response is held in
// memory whole.
const MaxMaxBody = 64 << 20

// Errors returned by a response hook (errors.Is); the proxy answers them
// with 502 {"code": "response_transform"}.
var (
	// ErrBodyTooLarge: a JSON body to filter exceeds Response.MaxBody.
	ErrBodyTooLarge = errors.New("response body too large to filter")
	// ErrInvalidJSON: a body declared as JSON does not parse.
	ErrInvalidJSON = errors.New("invalid JSON from upstream")
	// ErrUnsupportedEncoding: a JSON body to filter is compressed with
	// something other than gzip.
	ErrUnsupportedEncoding = errors.New("unsupported content encoding")
	// ErrPartialContent: a 206 response to a JSON-filtered route.
	ErrPartialContent = errors.New("partial content cannot be filtered")
)

// Response transforms upstream responses before they reach the client.
type Response struct {
	// Headers edits the response headers, after JSON filtering.
	Headers Headers `yaml:"headers"`
	// JSONAllow, when set, filters JSON bodies down to these fields:
	// top-level member names ("id") or dotted paths ("driver.name"); an
	// array on a path is filtered element-wise ("stops.city" keeps the
	// city of every stop). Everything not listed is removed. Names cannot
	// contain ".". Default none: bodies pass unchanged.
	//
	// Only responses whose Content-Type is application/json or
	// application/*+json are filtered, whatever their status, except
	// responses without a body (HEAD, 1xx, 204, 304). The filtering fails
	// closed, with an error the proxy answers as 502: invalid JSON, a body
	// over MaxBody, a 206 partial response, or a Content-Encoding other than
	// gzip (gzip bodies are decompressed, filtered and sent uncompressed).
	// A route whose upstream may answer br or zstd should also set the
	// request header Accept-Encoding: gzip (request.headers.set). ETag and
	// digest headers of a filtered response are removed: they describe the
	// unfiltered body.
	JSONAllow []string `yaml:"json_allow"`
	// MaxBody is the largest (decompressed) JSON body filtered, in bytes;
	// larger ones are refused (502), never passed unfiltered. Default 1 MiB,
	// at most 64 MiB. Unused without JSONAllow.
	MaxBody int `yaml:"max_body"`
}

// Validate reports every problem of r at once; it does not modify r.
func (r Response) Validate() error { return errors.Join(r.validate()...) }

func (r Response) validate() []error {
	errs := r.Headers.validate("headers")
	errs = append(errs, validateAllow(r.JSONAllow)...)
	if r.MaxBody < 0 || r.MaxBody > MaxMaxBody {
		errs = append(errs, fmt.Errorf("max_body: %d: expected 0 (default %d) to %d bytes", r.MaxBody, DefaultMaxBody, MaxMaxBody))
	}
	return errs
}

// ResponseTransform is a compiled Response. Safe for concurrent use; it
// holds no mutable state.
type ResponseTransform struct {
	headers headerOps
	allow   *jsonNode // nil: no filtering
	maxBody int
}

// NewResponse validates cfg, applies defaults and compiles it.
func NewResponse(cfg Response) (*ResponseTransform, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &ResponseTransform{headers: compileHeaders(cfg.Headers), allow: compileAllow(cfg.JSONAllow), maxBody: cfg.MaxBody}
	if t.maxBody == 0 {
		t.maxBody = DefaultMaxBody
	}
	return t, nil
}

// Hook returns the transform as a proxy response hook
// (proxy.Route.ResponseHooks).
func (t *ResponseTransform) Hook() func(*http.Response) error { return t.Apply }

// Apply transforms resp in place: the JSON filter, then the headers. On
// error resp.Body has been closed.
func (t *ResponseTransform) Apply(resp *http.Response) error {
	if t.allow != nil && hasBody(resp) && isJSON(resp.Header.Get("Content-Type")) {
		if err := t.filterBody(resp); err != nil {
			return err
		}
	}
	t.headers.apply(resp.Header)
	return nil
}

func hasBody(resp *http.Response) bool {
	if resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0 {
		return false
	}
	if resp.Request != nil && resp.Request.Method == http.MethodHead {
		return false
	}
	s := resp.StatusCode
	return s >= 200 && s != http.StatusNoContent && s != http.StatusNotModified
}

// isJSON reports whether a Content-Type is application/json or
// application/*+json, parameters ignored.
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(mt)
	sub, ok := cutPrefixFold(mt, "application/")
	if !ok {
		return false
	}
	return strings.EqualFold(sub, "json") || len(sub) > 5 && strings.EqualFold(sub[len(sub)-5:], "+json")
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// stale lists headers that describe the unfiltered body.
var stale = []string{"Etag", "Content-Md5", "Digest", "Content-Digest", "Repr-Digest", "Accept-Ranges"}

func (t *ResponseTransform) filterBody(resp *http.Response) (err error) {
	body := resp.Body
	defer func() {
		if err != nil {
			body.Close()
			err = fmt.Errorf("filtering JSON response: %w", err)
		}
	}()
	if resp.StatusCode == http.StatusPartialContent {
		return ErrPartialContent
	}
	var r io.Reader = body
	gz := false
	switch enc := strings.TrimSpace(strings.Join(resp.Header.Values("Content-Encoding"), ",")); {
	case enc == "" || strings.EqualFold(enc, "identity"):
		if resp.ContentLength > int64(t.maxBody) {
			return fmt.Errorf("%d bytes over the limit of %d: %w", resp.ContentLength, t.maxBody, ErrBodyTooLarge)
		}
	case strings.EqualFold(enc, "gzip") || strings.EqualFold(enc, "x-gzip"):
		zr, err := gzip.NewReader(body)
		if err != nil {
			return fmt.Errorf("reading gzip body: %w", err)
		}
		r, gz = zr, true
	default:
		return fmt.Errorf("content encoding %q; expected identity or gzip: %w", enc, ErrUnsupportedEncoding)
	}

	var src []byte
	if n := resp.ContentLength; n > 0 && !gz {
		// Known length (at most maxBody, checked above): read it exactly;
		// net/http stops the body at Content-Length.
		src = make([]byte, n)
		if _, err := io.ReadFull(r, src); err != nil {
			return fmt.Errorf("reading body: %w", err)
		}
	} else {
		var err error
		if src, err = io.ReadAll(io.LimitReader(r, int64(t.maxBody)+1)); err != nil {
			return fmt.Errorf("reading body: %w", err)
		}
		if len(src) > t.maxBody {
			return fmt.Errorf("over the limit of %d bytes: %w", t.maxBody, ErrBodyTooLarge)
		}
	}
	body.Close()
	out := src
	if len(bytes.TrimSpace(src)) > 0 { // an empty body has nothing to hide
		if !json.Valid(src) {
			return fmt.Errorf("%d bytes: %w", len(src), ErrInvalidJSON)
		}
		out = filterJSON(make([]byte, 0, len(src)), src, t.allow)
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.TransferEncoding = nil
	resp.Uncompressed = resp.Uncompressed || gz
	h := resp.Header
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	if gz {
		delete(h, "Content-Encoding")
	}
	for _, k := range stale {
		delete(h, k)
	}
	return nil
}
