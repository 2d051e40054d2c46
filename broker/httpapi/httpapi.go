// Package httpapi serves the broker's public HTTP/JSON interface.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/httpx"
)

// Request headers of a publish.
const (
	HeaderMsgID  = "Msg-Id"
	HeaderMsgKey = "Msg-Key"
	HeaderDelay  = "Delay" // Go duration ("5s") or seconds ("5")
	HeaderTTL    = "TTL"   // Go duration or seconds
	// HeaderPrefix marks a message header: "Msg-Header-Color: red" stores
	// header "color" = "red".
	HeaderPrefix = "Msg-Header-"
)

// maxWait bounds a long poll.
const maxWait = 60 * time.Second

// Server is the HTTP handler of a broker.
type Server struct {
	b     *engine.Broker
	mux   *http.ServeMux
	allow map[string][]string // path pattern -> methods, while routing
	auth  *access.Authenticator
	list  int // page size of listings: default and maximum
}

var _ http.Handler = (*Server)(nil)

// Options configure a Server. The zero value serves the API alone.
type Options struct {
	// Metrics, if set, is served at GET /metrics in the Prometheus
	// exposition format: typically the registry passed to
	// engine.Config.Metrics. Default none (/metrics is 404).
	Metrics prometheus.Gatherer
	// Auth, if set, makes every request but GET /healthz authenticate
	// (Authorization: Bearer or Basic, or a verified client certificate;
	// 401 with a challenge otherwise) and checks the route's permission
	// (403 naming the user, permission and resource). Nil: open.
	Auth *access.Authenticator
	// ListMax is the largest page of GET /v1/queues, /v1/topics and
	// /v1/streams, and the page a request without ?limit= gets; more
	// names follow by the answer's Link rel="next". Default 1000.
	ListMax int
}

// New returns the handler for b, without /metrics.
func New(b *engine.Broker) *Server { return NewWithOptions(b, Options{}) }

// NewWithOptions returns the handler for b configured by opts.
func NewWithOptions(b *engine.Broker, opts Options) *Server {
	s := &Server{b: b, mux: http.NewServeMux(), allow: map[string][]string{}, auth: opts.Auth, list: opts.ListMax}
	if s.list <= 0 {
		s.list = DefaultListMax
	}
	if opts.Metrics != nil {
		s.handle("GET /metrics", promhttp.HandlerFor(opts.Metrics, promhttp.HandlerOpts{}).ServeHTTP)
	}
	s.handle("GET /v1/queues", s.listQueues)
	s.handle("PUT /v1/queues/{name}", s.putQueue)
	s.handle("GET /v1/queues/{name}", s.getQueue)
	s.handle("DELETE /v1/queues/{name}", s.deleteQueue)
	s.handle("POST /v1/queues/{name}/messages", s.publish)
	s.handle("GET /v1/queues/{name}/messages/{id}", s.messageStatus)
	s.handle("POST /v1/queues/{name}/receive", s.receive)
	s.handle("POST /v1/queues/{name}/ack", s.ack)
	s.handle("POST /v1/queues/{name}/nack", s.nack)
	s.handle("POST /v1/queues/{name}/redrive", s.redrive)
	s.routePubSub()
	s.handle("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, broker.HealthAnswer{Status: "ok"}) })
	// Every path answers the methods it does not take with 405 and the
	// ones it does in Allow (OPTIONS: 204 with Allow).
	for pattern, methods := range s.allow {
		if slices.Contains(methods, http.MethodGet) {
			methods = append(methods, http.MethodHead)
		}
		slices.Sort(methods)
		allow := strings.Join(methods, ", ")
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			if r.Method == http.MethodOptions {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			writeErr(w, http.StatusMethodNotAllowed, broker.CodeBadRequest,
				fmt.Sprintf("method %s is not allowed on %s: use %s", r.Method, r.URL.Path, allow))
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	})
	return s
}

// handle registers h for "METHOD /path" and records the method as allowed
// on the path.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	s.mux.HandleFunc(pattern, s.guard(pattern, h))
	s.allow[path] = append(s.allow[path], method)
}

// crossOrigin is net/http's CSRF check (Sec-Fetch-Site, else Origin
// against Host; GET, HEAD and OPTIONS always pass).
var crossOrigin = http.NewCrossOriginProtection()

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := crossOrigin.Check(r); err != nil {
		// A web page could post a form (text/plain or urlencoded: no
		// preflight) to the broker: published, received or redriven with
		// the Basic credentials or client certificate the browser holds,
		// or with nothing on an open loopback broker.
		writeErr(w, http.StatusForbidden, "cross_origin", r.Method+" "+r.URL.Path+" from another origin (a web page) is refused: the broker API takes changes only from programs")
		return
	}
	if s.auth != nil && r.URL.Path != "/healthz" {
		p, err := s.auth.Request(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", access.Challenge)
			fail(w, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
	}
	s.mux.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeProblem(w, status, broker.ErrorBody{Code: code, Detail: msg})
}

// writeProblem answers status with e as RFC 9457 problem details: type,
// title and status filled in, error the same as detail.
func writeProblem(w http.ResponseWriter, status int, e broker.ErrorBody) {
	e.Type, e.Status, e.Error = "about:blank", status, e.Detail
	if e.Title = http.StatusText(status); e.Title == "" {
		e.Title = "Error"
	}
	h := w.Header()
	h.Set("Content-Type", httpx.ProblemContentType)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(e)
}

// fail maps a broker error to its status and code.
func fail(w http.ResponseWriter, err error) {
	code := broker.ErrorCode(err)
	status, ok := codeStatus[code]
	if !ok {
		code, status = broker.CodeInternal, http.StatusInternalServerError
	}
	var full *broker.QueueFullError
	if errors.As(err, &full) {
		w.Header().Set("Retry-After", "1")
		writeProblem(w, status, broker.ErrorBody{Detail: err.Error(), Code: code, Queue: full.Queue, Limit: full.Limit})
		return
	}
	msg := err.Error()
	if code == broker.CodeNotFound {
		msg = notFoundMsg(msg)
	}
	writeErr(w, status, code, msg)
}

// notFoundMsg words the broker's `queue "rides": not found` as
// `queue "rides" not found` (and `queue "q" deleted: not found` as
// `queue "q" deleted`).
func notFoundMsg(msg string) string {
	suffix := ": " + broker.ErrNotFound.Error()
	base, ok := strings.CutSuffix(msg, suffix)
	if !ok {
		return msg
	}
	if strings.HasSuffix(base, `"`) {
		return base + " not found"
	}
	return base
}

// codeStatus is the HTTP status of each error code the API answers with;
// other codes are answered as internal errors.
var codeStatus = map[string]int{
	broker.CodeQueueFull:  http.StatusServiceUnavailable,
	broker.CodeNotFound:   http.StatusNotFound,
	broker.CodeTooLarge:   http.StatusRequestEntityTooLarge,
	broker.CodeBadRequest: http.StatusBadRequest,
	broker.CodeClosed:     http.StatusServiceUnavailable,
	broker.CodeTimeout:    http.StatusServiceUnavailable,
	// 507 Insufficient Storage: publishes are refused until space returns.
	broker.CodeStorageFull:  http.StatusInsufficientStorage,
	broker.CodeUnauthorized: http.StatusUnauthorized,
	broker.CodeForbidden:    http.StatusForbidden,
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeErr(w, http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...))
}

// decodeJSON strictly decodes an optional JSON body (empty means zero).
func decodeJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading body: %v", err)
	}
	return decodeBody(data, v)
}

func (s *Server) listQueues(w http.ResponseWriter, r *http.Request) {
	s.writeList(w, r, access.Queue, "queues", visible(r, access.Queue, s.b.Queues()))
}

// DefaultListMax is Options.ListMax's default: a request without limit
// gets as many names as every listing had before pages, up to this many
// (more follow by the Link).
const DefaultListMax = 1000

// writeList answers a page of a sorted listing of kind as {"key": [...]},
// with a Link rel="next" to the following page and an ETag of the page
// (If-None-Match: 304). A bad limit or cursor is 400 bad_request.
func (s *Server) writeList(w http.ResponseWriter, r *http.Request, kind, key string, names []string) {
	p, err := httpx.ParsePage(r, kind, s.list, s.list)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	if !slices.IsSorted(names) {
		names = slices.Clone(names)
		slices.Sort(names)
	}
	page, next := httpx.PageOf(names, p)
	if page == nil {
		page = []string{}
	}
	body, _ := json.Marshal(map[string][]string{key: page})
	body = append(body, '\n')
	httpx.SetNextLink(w, r, kind, next, p.Limit)
	if httpx.NotModified(w, r, httpx.ETag(body)) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// ifAbsent reads a declare's ?if_absent= (1/true or 0/false, default
// false); it answers 400 and reports false when the value is neither.
func ifAbsent(w http.ResponseWriter, r *http.Request) (on, ok bool) {
	switch v := r.URL.Query().Get("if_absent"); v {
	case "", "0", "false":
		return false, true
	case "1", "true":
		return true, true
	default:
		badRequest(w, "query if_absent=%q: want 1 or 0", v)
		return false, false
	}
}

// declared answers a declare: 200 with the settings and counts; with
// ?if_absent=1, 201 when it created the queue, topic or stream and 200
// (the existing one's settings, untouched) when it was already there.
func declared(ifAbsent, created bool) int {
	if ifAbsent && created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// putQueue declares a queue. With ?if_absent=1 an existing queue keeps its
// settings (the native Declare frame's if-absent flag): 201 created, 200
// already there.
func (s *Server) putQueue(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	onlyNew, ok := ifAbsent(w, r)
	if !ok {
		return
	}
	var cfg broker.QueueConfig
	if err := decodeJSON(r, &cfg); err != nil {
		badRequest(w, "queue %q settings: %v", name, err)
		return
	}
	created := true
	var err error
	if onlyNew {
		created, err = s.b.DeclareIfAbsent(name, cfg)
	} else {
		err = s.b.Declare(name, cfg)
	}
	if err != nil {
		fail(w, err)
		return
	}
	s.answerQueue(w, r, declared(onlyNew, created))
}

func (s *Server) getQueue(w http.ResponseWriter, r *http.Request) {
	s.answerQueue(w, r, http.StatusOK)
}

func (s *Server) answerQueue(w http.ResponseWriter, r *http.Request, status int) {
	info, err := s.b.Queue(r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, status, info)
}

func (s *Server) deleteQueue(w http.ResponseWriter, r *http.Request) {
	if err := s.b.DeleteQueue(r.PathValue("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseDur parses a Go duration or a number of seconds.
func parseDur(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	cfg, err := s.b.QueueConfig(name)
	if err != nil {
		fail(w, err)
		return
	}
	msg, opts, err := readMessage(r, "queue "+strconv.Quote(name), cfg.MaxMessageSize)
	if err != nil {
		if errors.Is(err, broker.ErrTooLarge) {
			s.b.RecordTooLarge(name)
		}
		failRead(w, err)
		return
	}
	res, err := s.b.Publish(r.Context(), name, msg, opts)
	if err != nil {
		fail(w, err)
		return
	}
	status := http.StatusCreated
	if opts.NoWait {
		status = http.StatusAccepted
	}
	writeJSON(w, status, broker.PublishAnswer{ID: strconv.FormatUint(res.Seq, 10), Duplicate: res.Duplicate})
}

// messageStatus answers the state of one message (broker.MessageStatus
// as JSON): live states from the queue, settled ones while the queue
// remembers them (broker.SettledMemory), else "unknown".
func (s *Server) messageStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || seq == 0 {
		badRequest(w, "message id %q: want a positive integer (the id a publish answered)", id)
		return
	}
	st, err := s.b.MessageStatus(r.PathValue("name"), seq)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// readMessage reads a message from a publish request: the body is the
// payload; Msg-Id, Msg-Key, Delay, TTL and Msg-Header-* headers; the query
// confirm=false asks for fire-and-forget. Bad input is an error naming the
// header or query; a body above maxSize wraps broker.ErrTooLarge. Answer
// either with failRead.
func readMessage(r *http.Request, what string, maxSize int) (broker.Message, broker.PublishOptions, error) {
	var (
		msg  = broker.Message{ID: r.Header.Get(HeaderMsgID), Key: r.Header.Get(HeaderMsgKey)}
		opts broker.PublishOptions
		err  error
	)
	if msg.Delay, err = parseDur(r.Header.Get(HeaderDelay)); err != nil {
		return msg, opts, fmt.Errorf("header Delay: %w", err)
	}
	if msg.TTL, err = parseDur(r.Header.Get(HeaderTTL)); err != nil {
		return msg, opts, fmt.Errorf("header TTL: %w", err)
	}
	for k, v := range r.Header {
		if len(k) > len(HeaderPrefix) && strings.EqualFold(k[:len(HeaderPrefix)], HeaderPrefix) && len(v) > 0 {
			if msg.Headers == nil {
				msg.Headers = make(map[string]string)
			}
			msg.Headers[strings.ToLower(k[len(HeaderPrefix):])] = v[0]
		}
	}
	switch c := r.URL.Query().Get("confirm"); c {
	case "", "true", "1":
	case "false", "0":
		opts.NoWait = true
	default:
		return msg, opts, fmt.Errorf("query confirm=%q: want true or false", c)
	}
	if r.ContentLength > int64(maxSize) {
		return msg, opts, fmt.Errorf("%w: %d bytes, %s accepts at most %d", broker.ErrTooLarge, r.ContentLength, what, maxSize)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(maxSize)+1))
	if err != nil {
		return msg, opts, fmt.Errorf("reading body: %w", err)
	}
	if len(body) > maxSize {
		return msg, opts, fmt.Errorf("%w: more than %d bytes, %s accepts at most %d", broker.ErrTooLarge, maxSize, what, maxSize)
	}
	msg.Body = body
	return msg, opts, nil
}

// failRead answers an error of readMessage: 413 too_large or 400.
func failRead(w http.ResponseWriter, err error) {
	if errors.Is(err, broker.ErrTooLarge) {
		fail(w, err)
		return
	}
	badRequest(w, "%v", err)
}

func (s *Server) receive(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var opts broker.ReceiveOptions
	var err error
	if v := q.Get("max"); v != "" {
		if opts.Max, err = strconv.Atoi(v); err != nil || opts.Max < 1 || opts.Max > 1000 {
			badRequest(w, "query max=%q: want 1..1000", v)
			return
		}
	}
	if opts.Wait, err = parseDur(q.Get("wait")); err != nil {
		badRequest(w, "query wait: %v", err)
		return
	}
	if opts.Wait > maxWait {
		badRequest(w, "query wait=%s: at most %s", opts.Wait, maxWait)
		return
	}
	if opts.Visibility, err = parseDur(q.Get("visibility")); err != nil {
		badRequest(w, "query visibility: %v", err)
		return
	}
	switch v := q.Get("auto_ack"); v {
	case "", "false", "0":
	case "true", "1":
		opts.AutoAck = true
	default:
		badRequest(w, "query auto_ack=%q: want true or false", v)
		return
	}
	ds, err := s.b.Receive(r.Context(), r.PathValue("name"), opts)
	if err != nil {
		fail(w, err)
		return
	}
	out := make([]broker.ReceivedMessage, len(ds))
	for i, d := range ds {
		h := d.Headers
		if h == nil {
			h = map[string]string{}
		}
		out[i] = broker.ReceivedMessage{ID: strconv.FormatUint(d.Seq, 10), Receipt: d.Receipt, Body: d.Body, Headers: h,
			Key: d.Key, MsgID: d.MsgID, Deliveries: d.Deliveries, Published: d.PublishedAt.UTC()}
	}
	writeJSON(w, http.StatusOK, out)
}

// settleRequest decodes broker.SettleRequest (the body of ack and nack)
// with a delay that may also be a bare number of seconds.
type settleRequest struct {
	Receipts []string     `json:"receipts"`
	Delay    *reqDuration `json:"delay,omitempty"` // nack only
}

// reqDuration is a duration in a request body: a Go duration string
// ("5s") or a number of seconds as a string ("5").
type reqDuration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *reqDuration) UnmarshalText(b []byte) error {
	v, err := parseDur(string(b))
	*d = reqDuration(v)
	return err
}

// settleKind says which of ack and nack a settle request is.
type settleKind int

const (
	kindAck settleKind = iota
	kindNack
)

func (s *Server) settle(w http.ResponseWriter, r *http.Request, kind settleKind) {
	var req settleRequest
	if err := decodeJSON(r, &req); err != nil {
		badRequest(w, "%v", err)
		return
	}
	if len(req.Receipts) == 0 {
		badRequest(w, "receipts: at least one receipt required")
		return
	}
	var (
		res broker.AckResult
		err error
	)
	if kind == kindNack {
		var d time.Duration
		if req.Delay != nil {
			d = time.Duration(*req.Delay)
		}
		res, err = s.b.Nack(r.Context(), r.PathValue("name"), req.Receipts, d)
	} else {
		if req.Delay != nil {
			badRequest(w, "delay: only valid for nack")
			return
		}
		res, err = s.b.Ack(r.Context(), r.PathValue("name"), req.Receipts)
	}
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) ack(w http.ResponseWriter, r *http.Request)  { s.settle(w, r, kindAck) }
func (s *Server) nack(w http.ResponseWriter, r *http.Request) { s.settle(w, r, kindNack) }

func (s *Server) redrive(w http.ResponseWriter, r *http.Request) {
	n, err := s.b.Redrive(r.Context(), r.PathValue("name"))
	var kept *broker.RedriveKeptError
	if errors.As(err, &kept) {
		// The others moved: an answer, not an error.
		writeJSON(w, http.StatusOK, broker.RedriveAnswer{Moved: n, Kept: kept.Kept, First: kept.First, DLQ: kept.DLQ})
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, broker.RedriveAnswer{Moved: n})
}
