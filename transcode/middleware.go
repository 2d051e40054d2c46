package transcode

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/switchyard/switchyard/httpx"
)

// gRPC status codes (google.rpc.Code).
var codeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// HTTPStatus maps a gRPC status code to its HTTP status, per the
// canonical table of google/rpc/code.proto. Unknown codes are 500.
func HTTPStatus(code int) int {
	switch code {
	case 0:
		return http.StatusOK
	case 1:
		return 499 // client closed request
	case 3, 9, 11: // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
		return http.StatusBadRequest
	case 4:
		return http.StatusGatewayTimeout
	case 5:
		return http.StatusNotFound
	case 6, 10: // ALREADY_EXISTS, ABORTED
		return http.StatusConflict
	case 7:
		return http.StatusForbidden
	case 8:
		return http.StatusTooManyRequests
	case 12:
		return http.StatusNotImplemented
	case 14:
		return http.StatusServiceUnavailable
	case 16:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError // UNKNOWN, INTERNAL, DATA_LOSS and unknown codes
}

func codeName(code int) string {
	if code >= 0 && code < len(codeNames) {
		return codeNames[code]
	}
	return "CODE_" + strconv.Itoa(code)
}

// Problem is the RFC 9457 body of a transcoded request's failure.
type Problem struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Status     int    `json:"status"`
	Detail     string `json:"detail,omitempty"`
	GRPCStatus string `json:"grpc_status,omitempty"` // the code's name (NOT_FOUND)
	GRPCCode   *int   `json:"grpc_code,omitempty"`
	Method     string `json:"grpc_method,omitempty"`
	RequestID  string `json:"request_id,omitempty"`
}

func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
		if p.Status == 499 {
			p.Title = "Client Closed Request"
		}
	}
	p.RequestID = httpx.RequestID(r)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(p.Status)
	b, _ := json.Marshal(p)
	_, _ = w.Write(append(b, '\n'))
	httpx.RecordStatus(r, p.Status)
}

func (t *Transcoder) refuse(w http.ResponseWriter, r *http.Request, status int, format string, args ...any) {
	t.stats.Refused.Add(1)
	writeProblem(w, r, Problem{Status: status, Detail: capDetail(fmt.Sprintf(format, args...))})
}

// maxDetail bounds the detail of a refusal: the JSON decoder quotes the
// offending value, which may be most of a 1 MiB body.
const maxDetail = 1024

func capDetail(s string) string { return httpx.ClipText(s, maxDetail) }

// find returns the rule matching r and the variables of its path; when
// the path matches under other methods only, allow lists them.
func (t *Transcoder) find(r *http.Request) (*rule, []binding, []string, error) {
	path := r.URL.EscapedPath()
	var allow []string
	for _, ru := range t.rules {
		vars, ok, err := ru.tmpl.match(path)
		if !ok {
			continue
		}
		if ru.verb != "*" && ru.verb != r.Method {
			allow = append(allow, ru.verb)
			continue
		}
		if err != nil {
			return ru, nil, nil, err
		}
		return ru, vars, nil, nil
	}
	return nil, nil, allow, nil
}

// Middleware transcodes every request of the route; the gRPC calls go to
// next (the proxy, forwarding to the route's upstream).
func (t *Transcoder) Middleware() httpx.Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.serve(w, r, next) })
	}
}

func (t *Transcoder) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ru, vars, allow, err := t.find(r)
	if ru == nil {
		if len(allow) > 0 {
			allow = dedupe(allow)
			w.Header().Set("Allow", strings.Join(allow, ", "))
			t.refuse(w, r, http.StatusMethodNotAllowed, "%s is not allowed on %s: expected %s", r.Method, r.URL.EscapedPath(), strings.Join(allow, " or "))
			return
		}
		t.refuse(w, r, http.StatusNotFound, "no gRPC method is mapped to %s %s", r.Method, r.URL.EscapedPath())
		return
	}
	if err != nil {
		t.refuse(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		t.refuse(w, r, http.StatusUnsupportedMediaType, "Content-Encoding %q is not accepted: send the JSON uncompressed", ce)
		return
	}
	if r.ContentLength > t.maxBody {
		t.refuse(w, r, http.StatusRequestEntityTooLarge, "request body of %d bytes is larger than the limit of %d", r.ContentLength, t.maxBody)
		return
	}
	var body []byte
	if r.Body != nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, t.maxBody+1))
		if err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				t.refuse(w, r, http.StatusRequestEntityTooLarge, "request body is larger than the limit of %d bytes", mb.Limit)
				return
			}
			t.refuse(w, r, http.StatusBadRequest, "reading the request body: %v", err)
			return
		}
		if int64(len(body)) > t.maxBody {
			t.refuse(w, r, http.StatusRequestEntityTooLarge, "request body is larger than the limit of %d bytes", t.maxBody)
			return
		}
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
			t.refuse(w, r, http.StatusUnsupportedMediaType, "Content-Type %q: expected application/json", ct)
			return
		}
	}
	msg, err := t.request(ru, vars, r.URL.RawQuery, body)
	if err != nil {
		t.refuse(w, r, http.StatusBadRequest, "%s: %v", ru.method.FullName(), err)
		return
	}
	payload, err := proto.MarshalOptions{}.Marshal(msg)
	if err != nil {
		t.refuse(w, r, http.StatusBadRequest, "%s: encoding the request: %v", ru.method.FullName(), err)
		return
	}
	frame := make([]byte, 5+len(payload))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(payload)))
	copy(frame[5:], payload)

	out := r.Clone(r.Context())
	out.Method = http.MethodPost
	u := *r.URL
	u.Path, u.RawPath, u.RawQuery = ru.grpcPath, "", ""
	out.URL = &u
	out.RequestURI = ""
	h := out.Header
	for _, k := range []string{"Content-Length", "Content-Encoding", "Accept-Encoding", "Grpc-Encoding", "Grpc-Accept-Encoding", "Transfer-Encoding"} {
		h.Del(k)
	}
	h.Set("Content-Type", "application/grpc")
	h.Set("Te", "trailers")
	out.ContentLength = int64(len(frame))
	out.Body = io.NopCloser(bytes.NewReader(frame))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(frame)), nil }
	t.stats.Calls.Add(1)

	if ru.method.IsStreamingServer() {
		t.stream(w, r, out, ru, next)
		return
	}
	cw := &captureWriter{h: http.Header{}, max: t.maxResp + 5}
	func() {
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				panic(v)
			} else if v != nil {
				cw.aborted = true
			}
		}()
		next.ServeHTTP(cw, out)
	}()
	t.unaryAnswer(w, r, ru, cw)
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// request builds the gRPC request message: the body first, then query
// parameters (unless the body is "*"), then path variables.
func (t *Transcoder) request(ru *rule, vars []binding, rawQuery string, body []byte) (*dynamicpb.Message, error) {
	msg := dynamicpb.NewMessage(ru.method.Input())
	if err := t.decodeBody(ru, body, msg); err != nil {
		return nil, err
	}
	if ru.body != "*" && rawQuery != "" {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return nil, fmt.Errorf("query: %v", err)
		}
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
	keysLoop:
		for _, k := range keys {
			fp, err := fieldPath(k)
			if err != nil {
				if t.cfg.IgnoreUnknownQuery {
					continue
				}
				return nil, fmt.Errorf("query parameter %q: %v", trunc(k), err)
			}
			if ru.bodyFD != nil {
				if fd, err := resolveField(ru.method.Input(), fp[:1]); err == nil && fd == ru.bodyFD {
					return nil, fmt.Errorf("query parameter %q: the field is set by the body", k)
				}
			}
			for _, v := range vars {
				if strings.Join(v.field, ".") == strings.Join(fp, ".") {
					continue keysLoop // the path variable wins
				}
			}
			fd, err := resolveField(ru.method.Input(), fp)
			if err != nil {
				if t.cfg.IgnoreUnknownQuery {
					continue
				}
				return nil, fmt.Errorf("query parameter %q: %v", trunc(k), err)
			}
			vals := q[k]
			if !fd.IsList() && len(vals) > 1 {
				return nil, fmt.Errorf("query parameter %q: repeated, but the field holds one value", k)
			}
			for _, v := range vals {
				if err := setField(msg, fp, v); err != nil {
					return nil, fmt.Errorf("query parameter %q: %v", trunc(k), err)
				}
			}
		}
	}
	for _, v := range vars {
		if err := setField(msg, v.field, v.value); err != nil {
			return nil, fmt.Errorf("path variable %s: %v", strings.Join(v.field, "."), err)
		}
	}
	return msg, nil
}

// grpcStatus reads the call's status from the captured headers and
// trailers: ok is false when the answer was not gRPC at all.
func grpcStatus(h http.Header) (code int, msg string, ok bool) {
	v := h.Get("Grpc-Status")
	m := h.Get("Grpc-Message")
	if v == "" {
		v = h.Get(http.TrailerPrefix + "Grpc-Status")
		m = h.Get(http.TrailerPrefix + "Grpc-Message")
	}
	if v == "" {
		return 0, "", false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return int(2), "malformed grpc-status " + strconv.Quote(trunc(v)), true
	}
	if dm, err := url.PathUnescape(m); err == nil {
		m = dm
	}
	return n, m, true
}

// copyHeaders copies the upstream's response metadata (the headers it
// sent before the body), without the gRPC protocol's own fields.
func copyHeaders(dst, src http.Header) {
	for k, v := range src {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "grpc-") || strings.HasPrefix(k, http.TrailerPrefix) || lk == "content-type" ||
			lk == "content-length" || lk == "trailer" || lk == "content-encoding" {
			continue
		}
		dst[k] = append([]string(nil), v...)
	}
}

func (t *Transcoder) failCall(w http.ResponseWriter, r *http.Request, ru *rule, code int, msg string) {
	t.stats.Failed.Add(1)
	c := code
	writeProblem(w, r, Problem{Status: HTTPStatus(code), Detail: msg, GRPCStatus: codeName(code), GRPCCode: &c,
		Method: string(ru.method.FullName())})
}

func (t *Transcoder) badUpstream(w http.ResponseWriter, r *http.Request, ru *rule, format string, args ...any) {
	t.stats.Failed.Add(1)
	writeProblem(w, r, Problem{Status: http.StatusBadGateway, Detail: fmt.Sprintf(format, args...),
		Method: string(ru.method.FullName())})
}

func (t *Transcoder) unaryAnswer(w http.ResponseWriter, r *http.Request, ru *rule, cw *captureWriter) {
	code, msg, isGRPC := grpcStatus(cw.h)
	switch {
	case cw.overflow: // before aborted: stopping the copy aborts the call
		t.badUpstream(w, r, ru, "the gRPC response is larger than max_response (%d bytes)", t.maxResp)
		return
	case cw.aborted && (!isGRPC || code == 0):
		t.badUpstream(w, r, ru, "the gRPC upstream broke off its answer")
		return
	case !isGRPC:
		t.badUpstream(w, r, ru, "the upstream answered HTTP %d without a gRPC status: is it a gRPC server (protocol h2 or h2c)?", cw.statusCode())
		return
	case code != 0:
		t.failCall(w, r, ru, code, msg)
		return
	}
	frames, rest, err := splitFrames(cw.buf, t.maxResp)
	if err == nil && (len(rest) != 0 || len(frames) != 1) {
		err = fmt.Errorf("expected one response message, got %d (and %d stray bytes)", len(frames), len(rest))
	}
	if err != nil {
		t.badUpstream(w, r, ru, "%v", err)
		return
	}
	body, err := t.marshalResponse(ru, frames[0])
	if err != nil {
		t.badUpstream(w, r, ru, "%v", err)
		return
	}
	copyHeaders(w.Header(), cw.header)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	httpx.RecordStatus(r, http.StatusOK)
}

func (t *Transcoder) marshalResponse(ru *rule, payload []byte) ([]byte, error) {
	m := dynamicpb.NewMessage(ru.method.Output())
	if err := (proto.UnmarshalOptions{Resolver: t.types}).Unmarshal(payload, m); err != nil {
		return nil, fmt.Errorf("the upstream's %s does not decode: %v", ru.method.Output().FullName(), err)
	}
	var (
		b   []byte
		err error
	)
	if ru.respFD != nil {
		b, err = t.marshalField(m, ru.respFD)
	} else {
		b, err = t.out.Marshal(m)
	}
	if err != nil {
		return nil, fmt.Errorf("writing %s as JSON: %v", ru.method.Output().FullName(), err)
	}
	if !t.out.Multiline {
		// protojson varies its spacing on purpose; clients get one
		// stable, compact form.
		var c bytes.Buffer
		if json.Compact(&c, b) == nil {
			b = c.Bytes()
		}
	}
	return append(b, '\n'), nil
}

// marshalField writes one field of m (response_body) as JSON.
func (t *Transcoder) marshalField(m protoreflect.Message, fd protoreflect.FieldDescriptor) ([]byte, error) {
	only := dynamicpb.NewMessage(m.Descriptor())
	if m.Has(fd) {
		only.Set(fd, m.Get(fd))
	}
	name := fd.JSONName()
	if t.out.UseProtoNames {
		name = string(fd.Name())
	}
	opts := t.out
	opts.Multiline = false
	for {
		whole, err := opts.Marshal(only)
		if err != nil {
			return nil, err
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(whole, &obj); err != nil {
			return nil, err
		}
		if v, ok := obj[name]; ok || opts.EmitUnpopulated {
			if !ok {
				v = json.RawMessage("null")
			}
			return v, nil
		}
		// An unset field is written as its zero value ([], {}, 0, "").
		opts.EmitUnpopulated = true
	}
}

// splitFrames cuts gRPC length-prefixed messages from b; rest is an
// incomplete tail.
func splitFrames(b []byte, max int64) (frames [][]byte, rest []byte, err error) {
	for len(b) >= 5 {
		if b[0] != 0 {
			if b[0] == 1 {
				return nil, nil, errors.New("the upstream sent a compressed message though none was asked for")
			}
			return nil, nil, fmt.Errorf("malformed gRPC message prefix (flag %d)", b[0])
		}
		n := int64(binary.BigEndian.Uint32(b[1:5]))
		if n > max {
			return nil, nil, fmt.Errorf("a gRPC response message of %d bytes is larger than max_response (%d bytes)", n, max)
		}
		if int64(len(b)-5) < n {
			break
		}
		frames = append(frames, b[5:5+n])
		b = b[5+n:]
	}
	return frames, b, nil
}

// captureWriter takes the proxy's answer to the gRPC call: headers,
// trailers (the proxy sets them in the header map after the body, or with
// http.TrailerPrefix) and at most max body bytes.
// errTooLarge fails a write past max_response.
var errTooLarge = errors.New("transcode: the gRPC response is larger than max_response")

type captureWriter struct {
	h        http.Header
	header   http.Header // snapshot at WriteHeader: the response headers
	code     int
	buf      []byte
	max      int64
	overflow bool
	aborted  bool
}

func (c *captureWriter) Header() http.Header { return c.h }

func (c *captureWriter) WriteHeader(code int) {
	if c.code != 0 || code < 200 {
		return
	}
	c.code = code
	c.header = c.h.Clone()
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if c.overflow || int64(len(c.buf)+len(p)) > c.max {
		// Refused whatever follows: fail the write so the proxy stops
		// copying (and ends the call) instead of reading an upstream that
		// may never stop until the route's timeout.
		c.overflow = true
		return 0, errTooLarge
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *captureWriter) Flush() {}

func (c *captureWriter) statusCode() int {
	if c.code == 0 {
		return http.StatusOK
	}
	return c.code
}
