package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
	"github.com/pb33f/libopenapi-validator/paths"

	"github.com/switchyard/switchyard/httpx"
)

// ProblemType is the RFC 9457 "type" of a contract violation.
const ProblemType = "https://github.com/switchyard/switchyard/blob/main/docs/security.md#contract-violations"

// Violation is one way a request or response breaks the contract.
type Violation struct {
	// In is where: "path", "query", "header", "cookie", "body", "operation",
	// "response".
	In string `json:"in"`
	// Name is the parameter's name, for parameters.
	Name string `json:"name,omitempty"`
	// Pointer is the JSON Pointer (RFC 6901) of the failing field in the
	// body ("/rider/email"); "" for the whole body.
	Pointer string `json:"pointer,omitempty"`
	// Message says what was expected.
	Message string `json:"message"`
}

// Problem is the RFC 9457 body of a refused request.
type Problem struct {
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Status     int         `json:"status"`
	Detail     string      `json:"detail"`
	Instance   string      `json:"instance,omitempty"`
	Contract   string      `json:"contract"`
	RequestID  string      `json:"request_id,omitempty"`
	Violations []Violation `json:"violations"`
}

// Stats counts what a contract's middleware did. Safe for concurrent use.
type Stats struct {
	Checked            atomic.Uint64 // requests validated
	Refused            atomic.Uint64 // requests answered 400/404/405/413/415
	ResponsesChecked   atomic.Uint64
	ResponseViolations atomic.Uint64
	ResponsesUnchecked atomic.Uint64 // too large or not JSON while checking responses
}

// Stats returns the contract's counters.
func (c *Contract) Stats() *Stats { return &c.stats }

// Middleware checks requests (and, per Config.Responses, responses)
// against the contract. Put it after authentication, so an anonymous
// caller learns nothing about the API's shape; security requirements in
// the document are left to the gateway's auth (not checked here).
//
// A body is read into memory up to MaxBody (413 beyond) and handed on as
// read, so the upstream receives exactly the validated bytes.
func (c *Contract) Middleware(log *slog.Logger) httpx.Middleware {
	if log == nil {
		log = slog.Default()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c.cfg.ServeAt != "" && r.URL.Path == c.cfg.ServeAt && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				c.serveDocument(w, r)
				return
			}
			if n := len(r.Header.Values("Content-Type")); n > 1 {
				// A singleton field (RFC 9110 section 8.3): the check reads
				// the first, an upstream may read the last.
				v := Violation{In: "header", Name: "Content-Type", Message: fmt.Sprintf("sent %d times; send it once", n)}
				c.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("the request does not match the API contract %q: %s", c.name, describe(v)), []Violation{v})
				return
			}
			var body []byte
			if r.Body != nil && r.Body != http.NoBody {
				if r.ContentLength > c.maxBody {
					c.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body (%d bytes) is larger than the %d bytes this contract checks", r.ContentLength, c.maxBody), nil)
					return
				}
				b, err := io.ReadAll(io.LimitReader(r.Body, c.maxBody+1))
				if err != nil {
					httpx.WriteError(w, r, &httpx.Error{Status: http.StatusBadRequest, Code: "bad_request_body", Msg: "reading the request body failed", Err: err})
					return
				}
				if int64(len(b)) > c.maxBody {
					c.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than the %d bytes this contract checks", c.maxBody), nil)
					return
				}
				body = b
				r.Body = io.NopCloser(bytes.NewReader(b))
				r.ContentLength = int64(len(b))
				r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
			}
			c.stats.Checked.Add(1)
			if len(body) > 0 && isJSON(r.Header.Get("Content-Type")) {
				if v := strictJSON(body); v != nil {
					c.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("the request does not match the API contract %q: %s", c.name, describe(*v)), []Violation{*v})
					return
				}
			}
			if status, detail, vs, allow := c.checkRequest(r, body); status != 0 {
				if allow != "" {
					w.Header().Set("Allow", allow)
				}
				c.refuse(w, r, status, detail, vs)
				return
			}
			if c.cfg.Responses == "" || c.cfg.Responses == ResponsesOff {
				next.ServeHTTP(w, r)
				return
			}
			rec := &recorder{w: w, max: c.maxBody}
			next.ServeHTTP(rec, r)
			c.finishResponse(rec, r, log)
		})
	}
}

// checkRequest validates r (whose body, if any, is body). status is 0
// when it conforms.
func (c *Contract) checkRequest(r *http.Request, body []byte) (status int, detail string, vs []Violation, allow string) {
	vr := *r // the validator reads the body: give it its own reader
	if body != nil {
		vr.Body = io.NopCloser(bytes.NewReader(body))
	}
	if r.Method == http.MethodHead && !c.hasHeadOperation(r) {
		// The validator lets HEAD match a path through its GET (RFC 9110:
		// a server answers HEAD as GET) but then looks for parameters on
		// the HEAD operation only, finds none and checks nothing: HEAD
		// /orders/seven?fields=evil reached the upstream, and Go's
		// net/http (among others) serves HEAD with the GET handler. Check
		// it as the GET it stands for.
		vr.Method = http.MethodGet
	}
	ok, errs := c.validate(&vr)
	if ok {
		if len(body) > 0 && !c.takesBody(&vr) {
			// The validator checks a body only against a requestBody; on
			// an operation without one it let any body through unread, to
			// an upstream that may read it (GET with a body).
			v := Violation{In: "body", Message: fmt.Sprintf("%s %s takes no request body in the contract", vr.Method, r.URL.Path)}
			return http.StatusBadRequest, fmt.Sprintf("the request does not match the API contract %q: %s", c.name, describe(v)), []Violation{v}, ""
		}
		return 0, "", nil, ""
	}
	for _, e := range errs {
		if e.IsPathMissingError() {
			return http.StatusNotFound, fmt.Sprintf("%s is not a path of the API (contract %q)", r.URL.Path, c.name), []Violation{{In: "path", Message: "no such path in the contract"}}, ""
		}
		if e.IsOperationMissingError() {
			allow = c.allowFor(e.SpecPath)
			return http.StatusMethodNotAllowed, fmt.Sprintf("%s is not an operation of %s (contract %q); allowed: %s", r.Method, r.URL.Path, c.name, allow),
				[]Violation{{In: "operation", Message: "method not in the contract"}}, allow
		}
	}
	status = http.StatusBadRequest
	for _, e := range errs {
		if e.ValidationType == helpers.RequestBodyValidation && e.ValidationSubType == helpers.RequestBodyContentType {
			status = http.StatusUnsupportedMediaType
		}
		vs = append(vs, violations(e)...)
	}
	sortViolations(vs)
	detail = fmt.Sprintf("the request does not match the API contract %q", c.name)
	if len(vs) > 0 {
		detail = fmt.Sprintf("%s: %s", detail, describe(vs[0]))
		if len(vs) > 1 {
			detail += fmt.Sprintf(" (and %d more)", len(vs)-1)
		}
	}
	return status, detail, vs, ""
}

// hasHeadOperation reports whether the path item r's path matches has
// an explicit HEAD operation.
func (c *Contract) hasHeadOperation(r *http.Request) (has bool) {
	if c.model == nil || !c.headOps {
		return false
	}
	defer func() { // third-party code: a panic means "no"
		if recover() != nil {
			has = false
		}
	}()
	item, _, _ := paths.FindPath(r, c.model, nil)
	return item != nil && item.Head != nil
}

// takesBody reports whether the operation r matched declares a
// requestBody (true when it cannot be told).
func (c *Contract) takesBody(r *http.Request) (takes bool) {
	if c.model == nil {
		return true
	}
	defer func() {
		if recover() != nil {
			takes = true
		}
	}()
	item, _, _ := paths.FindPath(r, c.model, nil)
	if item == nil {
		return true
	}
	op := helpers.ExtractOperation(r, item)
	return op == nil || op.RequestBody != nil
}

// validate runs the third-party validator; a panic in it is a 400 for
// this request, never a crashed gateway.
func (c *Contract) validate(r *http.Request) (ok bool, errs []*verrors.ValidationError) {
	defer func() {
		if p := recover(); p != nil {
			ok = false
			errs = []*verrors.ValidationError{{Message: "the request could not be checked against the contract", Reason: fmt.Sprint(p)}}
		}
	}()
	return c.v.ValidateHttpRequestSync(r)
}

func (c *Contract) allowFor(specPath string) string {
	methods := c.ops[specPath]
	if methods == nil {
		return ""
	}
	out := make([]string, 0, len(methods))
	for m := range methods {
		out = append(out, m)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// violations converts one validator error into violations: one per
// schema failure, or one for the error itself.
func violations(e *verrors.ValidationError) []Violation {
	in := "request"
	switch e.ValidationType {
	case helpers.ParameterValidation:
		in = e.ValidationSubType // path, query, header, cookie
	case helpers.RequestBodyValidation, helpers.Schema:
		in = "body"
	case helpers.ResponseBodyValidation:
		in = "response"
	case helpers.ParameterValidationPath, helpers.ParameterValidationQuery, helpers.ParameterValidationHeader, helpers.ParameterValidationCookie:
		in = e.ValidationType
	}
	if len(e.SchemaValidationErrors) == 0 {
		return []Violation{{In: in, Name: e.ParameterName, Message: message(e.Message, e.Reason)}}
	}
	out := make([]Violation, 0, len(e.SchemaValidationErrors))
	for _, f := range e.SchemaValidationErrors {
		v := Violation{In: in, Name: e.ParameterName, Message: f.Reason}
		if in == "body" || in == "response" {
			v.Pointer = pointer(f.InstancePath)
		}
		if v.Message == "" {
			v.Message = message(e.Message, e.Reason)
		}
		out = append(out, v)
	}
	return out
}

func message(msg, reason string) string {
	if reason == "" || reason == msg {
		return msg
	}
	return msg + ": " + reason
}

// pointer builds an RFC 6901 JSON Pointer from path segments.
func pointer(segs []string) string {
	if len(segs) == 0 {
		return ""
	}
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

func describe(v Violation) string {
	switch {
	case v.Pointer != "":
		return fmt.Sprintf("%s %s: %s", v.In, v.Pointer, v.Message)
	case v.Name != "":
		return fmt.Sprintf("%s parameter %q: %s", v.In, v.Name, v.Message)
	}
	return fmt.Sprintf("%s: %s", v.In, v.Message)
}

func sortViolations(vs []Violation) {
	sort.SliceStable(vs, func(i, j int) bool {
		if vs[i].In != vs[j].In {
			return vs[i].In < vs[j].In
		}
		if vs[i].Name != vs[j].Name {
			return vs[i].Name < vs[j].Name
		}
		return vs[i].Pointer < vs[j].Pointer
	})
}

func (c *Contract) refuse(w http.ResponseWriter, r *http.Request, status int, detail string, vs []Violation) {
	c.stats.Refused.Add(1)
	if vs == nil {
		vs = []Violation{}
	}
	// The validator quotes the offending values: a 1 MiB string that
	// misses its pattern came back twice, and a body can break the
	// schema in as many places as it has fields. The problem stays small.
	if len(vs) > maxViolations {
		n := len(vs) - maxViolations
		vs = append(vs[:maxViolations:maxViolations], Violation{In: "request", Message: fmt.Sprintf("%d more violations not listed", n)})
	}
	for i := range vs {
		vs[i].Message = capText(vs[i].Message)
		vs[i].Pointer = capText(vs[i].Pointer)
		vs[i].Name = capText(vs[i].Name)
	}
	detail = capText(detail)
	p := Problem{Type: ProblemType, Title: http.StatusText(status), Status: status, Detail: detail,
		Instance: r.URL.Path, Contract: c.name, RequestID: httpx.RequestID(r), Violations: vs}
	writeProblem(w, r, p)
}

// maxText bounds each text of a problem, maxViolations their number.
const (
	maxText       = 1024
	maxViolations = 100
)

func capText(s string) string { return httpx.ClipText(s, maxText) }

func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	b, _ := json.Marshal(p)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	httpx.RecordStatus(r, p.Status)
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(b, '\n'))
}

func (c *Contract) serveDocument(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", c.mediaType)
	h.Set("Content-Length", strconv.Itoa(len(c.doc)))
	h.Set("Cache-Control", "no-cache")
	httpx.RecordStatus(r, http.StatusOK)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(c.doc)
	}
}

// finishResponse checks a recorded response and sends it (or, enforcing,
// a 502 in its place).
func (c *Contract) finishResponse(rec *recorder, r *http.Request, log *slog.Logger) {
	if !rec.buffering { // passed through: too large, not JSON, or streamed
		if rec.wroteHeader {
			c.stats.ResponsesUnchecked.Add(1)
		}
		return
	}
	c.stats.ResponsesChecked.Add(1)
	resp := &http.Response{StatusCode: rec.status, Header: rec.header, Body: io.NopCloser(bytes.NewReader(rec.buf.Bytes())),
		ContentLength: int64(rec.buf.Len()), Request: r}
	vr := *r
	vr.Body = http.NoBody
	ok, errs := c.validateResponse(&vr, resp)
	if !ok {
		c.stats.ResponseViolations.Add(1)
		var vs []Violation
		for _, e := range errs {
			for _, v := range violations(e) {
				v.In = "response"
				vs = append(vs, v)
			}
		}
		sortViolations(vs)
		first := "does not match"
		if len(vs) > 0 {
			first = describe(vs[0])
		}
		log.Warn("response violates the API contract", "contract", c.name, "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "violation", first, "violations", len(vs), "request_id", httpx.RequestID(r))
		if c.cfg.Responses == ResponsesEnforce {
			p := Problem{Type: ProblemType, Title: http.StatusText(http.StatusBadGateway), Status: http.StatusBadGateway,
				Detail:   fmt.Sprintf("the upstream's response does not match the API contract %q: %s", c.name, first),
				Instance: r.URL.Path, Contract: c.name, RequestID: httpx.RequestID(r), Violations: vs}
			dst := rec.w.Header()
			for k := range dst {
				delete(dst, k)
			}
			writeProblem(rec.w, r, p)
			return
		}
	}
	rec.flushBuffered()
}

func (c *Contract) validateResponse(r *http.Request, resp *http.Response) (ok bool, errs []*verrors.ValidationError) {
	defer func() {
		if p := recover(); p != nil {
			ok = false
			errs = []*verrors.ValidationError{{Message: "the response could not be checked against the contract", Reason: fmt.Sprint(p)}}
		}
	}()
	return c.v.ValidateHttpResponse(r, resp)
}

// recorder holds a JSON response of at most max bytes until the handler
// returns; anything else (not JSON, larger, flushed, hijacked) passes
// straight through.
type recorder struct {
	w           http.ResponseWriter
	max         int64
	header      http.Header // the upstream's headers while buffering
	status      int
	wroteHeader bool
	buffering   bool
	buf         bytes.Buffer
}

func (rec *recorder) Header() http.Header {
	if rec.buffering {
		return rec.header
	}
	return rec.w.Header()
}

func (rec *recorder) WriteHeader(status int) {
	if rec.wroteHeader {
		return
	}
	if status >= 100 && status < 200 { // informational: pass on, not final
		rec.w.WriteHeader(status)
		return
	}
	rec.wroteHeader = true
	rec.status = status
	h := rec.w.Header()
	cl := h.Get("Content-Length")
	n, err := strconv.ParseInt(cl, 10, 64)
	if isJSON(h.Get("Content-Type")) && (cl == "" || err == nil && n <= rec.max) && status != http.StatusSwitchingProtocols {
		rec.buffering = true
		rec.header = h.Clone()
		return
	}
	rec.w.WriteHeader(status)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	if !rec.buffering {
		return rec.w.Write(p)
	}
	if int64(rec.buf.Len()+len(p)) > rec.max { // too large to check: send what we have and go on
		rec.flushBuffered()
		return rec.w.Write(p)
	}
	return rec.buf.Write(p)
}

// flushBuffered sends the held status, headers and body, and stops
// buffering.
func (rec *recorder) flushBuffered() {
	if !rec.buffering {
		return
	}
	rec.buffering = false
	dst := rec.w.Header()
	for k := range dst {
		delete(dst, k)
	}
	for k, v := range rec.header {
		dst[k] = v
	}
	rec.w.WriteHeader(rec.status)
	if rec.buf.Len() > 0 {
		_, _ = rec.w.Write(rec.buf.Bytes())
	}
	rec.buf = bytes.Buffer{}
}

// Flush sends what is held and passes the flush on: a flushing handler is
// streaming, and a stream is not held back for checking.
func (rec *recorder) Flush() {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	rec.flushBuffered()
	_ = http.NewResponseController(rec.w).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.w }

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
