package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/broker"
	brokerclient "github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/httpx"
)

// Defaults of publish routes.
const (
	// defaultPublishBody caps a published request body when the route
	// sets no max_request_body.
	defaultPublishBody = 1 << 20
	// defaultBrokerTimeout bounds one call to the broker.
	defaultBrokerTimeout = 10 * time.Second
	// maxIdempotencyKey is the longest Idempotency-Key accepted.
	maxIdempotencyKey = 255
	// statusSegment is the path segment of status lookups:
	// {path or path_prefix}/_status/{id}.
	statusSegment = "/_status/"
)

// HeaderIdempotencyKey makes a client's retries of a publish idempotent:
// repeats within the queue's dedup_window answer the first id and are not
// enqueued again.
const HeaderIdempotencyKey = "Idempotency-Key"

// defaultPublishHeaders are copied into message headers when a route does
// not list its own: the identity the gateway established, the body's type
// and the request id.
var defaultPublishHeaders = []string{"X-Consumer", "X-Consumer-Tier", "X-Scopes", "Content-Type", "X-Request-Id"}

// brokerClient is what publish routes need from the broker;
// *brokerclient.HTTP implements it over the broker's HTTP API.
type brokerClient interface {
	// Publish returns once the messages are durable (see brokerclient.Publisher).
	Publish(ctx context.Context, queue string, msgs ...broker.Message) ([]broker.PublishResult, error)
	// Status returns the state of a message published earlier.
	Status(ctx context.Context, queue string, seq uint64) (broker.MessageStatus, error)
}

var _ brokerClient = (*brokerclient.HTTP)(nil)

// publisher answers a publish route: it publishes each request to a queue
// and answers 202 with a tracking id (the broker's message id) and a
// status URL, which its status handler answers by asking the broker.
type publisher struct {
	queue        string
	broker       brokerClient
	timeout      time.Duration // per broker call
	maxBody      int64
	headers      []string // canonical request header names copied into the message
	statusPrefix string   // e.g. "/orders/_status/"
}

// newPublisher builds the publisher of route r (at key path path). The
// config was validated, so r.Publish and cfg.Broker are set.
func newPublisher(cfg *Config, path string, r Route, rt http.RoundTripper) (*publisher, error) {
	pc := r.Publish
	if !broker.ValidName(pc.Queue) {
		return nil, cfg.Errorf(path+".publish.queue", "invalid queue name %q: expected letters, digits, '.', '_' or '-'", pc.Queue)
	}
	hc := &brokerclient.HTTP{Base: cfg.Broker.URL}
	if rt != nil {
		hc.Client = &http.Client{Transport: rt}
	}
	p := &publisher{
		queue:        pc.Queue,
		broker:       hc,
		timeout:      orDuration(cfg.Broker.Timeout, defaultBrokerTimeout),
		maxBody:      r.MaxRequestBody,
		statusPrefix: statusBase(r.Match) + statusSegment,
	}
	if p.maxBody <= 0 {
		p.maxBody = defaultPublishBody
	}
	hs := pc.Headers
	if len(hs) == 0 {
		hs = defaultPublishHeaders
	}
	for _, h := range hs {
		p.headers = append(p.headers, http.CanonicalHeaderKey(h))
	}
	return p, nil
}

// statusBase is the path under which a publish route's status lookups
// live: its exact path or path prefix, without a trailing slash.
func statusBase(m Match) string {
	base := m.Path
	if base == "" {
		base = m.PathPrefix
	}
	return strings.TrimSuffix(base, "/")
}

// statusMatch is the match of the status route of a publish route: the
// same host, headers and client type, GET and HEAD under the status path.
func (p *publisher) statusMatch(m Match) Match {
	m.Path = ""
	m.PathPrefix = strings.TrimSuffix(p.statusPrefix, "/")
	m.Methods = []string{http.MethodGet, http.MethodHead}
	return m
}

// acceptAnswer is the body of a 202 answer.
type acceptAnswer struct {
	ID        string `json:"id"`
	Queue     string `json:"queue"`
	StatusURL string `json:"status_url"`
	Duplicate bool   `json:"duplicate"`
}

// ServeHTTP publishes the request: the body, the configured headers plus
// x-request-method and x-request-uri, with Msg-Id derived from the
// Idempotency-Key (none without one).
func (p *publisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		w.Header().Set("Allow", "POST, PUT, PATCH, DELETE")
		httpx.WriteError(w, r, &httpx.Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Msg: fmt.Sprintf("%s does not publish: use POST, PUT, PATCH or DELETE, or GET %s{id} for a status", r.Method, p.statusPrefix)})
		return
	}
	msgID, perr := p.msgID(r)
	if perr != nil {
		httpx.WriteError(w, r, perr)
		return
	}
	body, perr := p.readBody(r)
	if perr != nil {
		httpx.WriteError(w, r, perr)
		return
	}
	msg := broker.Message{ID: msgID, Body: body, Headers: make(map[string]string, len(p.headers)+2)}
	for _, h := range p.headers {
		v := r.Header.Get(h)
		if h == "X-Request-Id" {
			v = httpx.RequestID(r) // the id the gateway uses, which may differ from the client's
		}
		if v != "" {
			msg.Headers[strings.ToLower(h)] = v
		}
	}
	msg.Headers["x-request-method"] = r.Method
	msg.Headers["x-request-uri"] = r.URL.RequestURI()

	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	res, err := p.broker.Publish(ctx, p.queue, msg)
	if err == nil && len(res) != 1 {
		err = fmt.Errorf("broker answered %d results for one message", len(res))
	}
	if err != nil {
		httpx.WriteError(w, r, p.publishError(err))
		return
	}
	id := strconv.FormatUint(res[0].Seq, 10)
	ans := acceptAnswer{ID: id, Queue: p.queue, StatusURL: p.statusPrefix + id, Duplicate: res[0].Duplicate}
	w.Header().Set("Location", ans.StatusURL)
	writeJSON(w, r, http.StatusAccepted, ans)
}

// msgID derives the producer id that makes retries idempotent: the
// Idempotency-Key, scoped to the authenticated consumer so that two
// consumers' keys never collide. Without a key there is no producer id and
// no deduplication: a client-chosen X-Request-Id is not trusted as one,
// since reusing it would silently drop messages.
func (p *publisher) msgID(r *http.Request) (string, *httpx.Error) {
	// The consumer name is escaped so it holds no "/": the split is unambiguous.
	consumer := url.PathEscape(r.Header.Get("X-Consumer"))
	key := r.Header.Get(HeaderIdempotencyKey)
	if key == "" {
		return "", nil
	}
	if len(key) > maxIdempotencyKey || strings.IndexFunc(key, func(c rune) bool { return c < ' ' || c > '~' }) >= 0 {
		return "", &httpx.Error{Status: http.StatusBadRequest, Code: "bad_idempotency_key",
			Msg: fmt.Sprintf("header %s: expected 1 to %d printable ASCII characters", HeaderIdempotencyKey, maxIdempotencyKey)}
	}
	return "key:" + consumer + "/" + key, nil
}

// readBody reads the request body up to the route's cap.
func (p *publisher) readBody(r *http.Request) ([]byte, *httpx.Error) {
	tooLarge := func(n string) *httpx.Error {
		return &httpx.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Msg: fmt.Sprintf("request body of %s bytes exceeds the limit of %d bytes", n, p.maxBody)}
	}
	if r.ContentLength > p.maxBody {
		return nil, tooLarge(strconv.FormatInt(r.ContentLength, 10))
	}
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, p.maxBody+1))
	if err != nil {
		var pe *httpx.Error // the route's max_request_body middleware reports 413 so
		if errors.As(err, &pe) {
			return nil, pe
		}
		return nil, &httpx.Error{Status: http.StatusBadRequest, Code: "bad_request", Msg: "reading request body", Err: err}
	}
	if int64(len(body)) > p.maxBody {
		return nil, tooLarge("more than " + strconv.FormatInt(p.maxBody, 10))
	}
	return body, nil
}

// publishError maps a failed publish to the client's answer: the broker
// unreachable or timing out is 503 broker_unavailable, a full queue 503
// queue_full, a body over the queue's max_message_size 413, anything else
// (an unknown queue first of all) 502 publish_failed.
func (p *publisher) publishError(err error) *httpx.Error {
	var full *broker.QueueFullError
	switch {
	case errors.As(err, &full):
		return &httpx.Error{Status: http.StatusServiceUnavailable, Code: "queue_full", Msg: full.Error(), RetryAfter: time.Second, Err: err}
	case errors.Is(err, broker.ErrNotFound):
		return &httpx.Error{Status: http.StatusBadGateway, Code: "publish_failed",
			Msg: fmt.Sprintf("publishing to queue %q: the broker has no such queue", p.queue), Err: err}
	case errors.Is(err, broker.ErrTooLarge):
		return &httpx.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Msg: fmt.Sprintf("queue %q refused the body as too large", p.queue), Err: err}
	}
	if e := unavailable(err, p.timeout); e != nil {
		return e
	}
	return &httpx.Error{Status: http.StatusBadGateway, Code: "publish_failed",
		Msg: fmt.Sprintf("publishing to queue %q failed", p.queue), Err: err}
}

// unavailable returns the 503 of a broker that cannot be reached, is
// closing or does not answer within timeout; nil for other errors.
func unavailable(err error, timeout time.Duration) *httpx.Error {
	msg := ""
	switch {
	case errors.Is(err, brokerclient.ErrDisconnected), errors.Is(err, broker.ErrClosed):
		msg = "the message broker cannot be reached"
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("the message broker did not answer within %s", timeout)
	default:
		return nil
	}
	return &httpx.Error{Status: http.StatusServiceUnavailable, Code: "broker_unavailable", Msg: msg, RetryAfter: time.Second, Err: err}
}

// statusAnswer is a status lookup's answer: the broker's view without the
// producer id, ordering key and dead-letter queue (which name other
// consumers' keys and the broker's topology).
type statusAnswer struct {
	ID          string    `json:"id"`
	Queue       string    `json:"queue"`
	State       string    `json:"state"`
	Deliveries  int       `json:"deliveries"`
	PublishedAt time.Time `json:"published,omitzero"`
	AvailableAt time.Time `json:"available_at,omitzero"`
	VisibleAt   time.Time `json:"visible_at,omitzero"`
	SettledAt   time.Time `json:"settled_at,omitzero"`
	Reason      string    `json:"reason,omitempty"`
}

// status answers GET {statusPrefix}{id} by asking the broker.
func (p *publisher) status(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, p.statusPrefix)
	seq, err := strconv.ParseUint(id, 10, 64)
	if !strings.HasPrefix(r.URL.Path, p.statusPrefix) || err != nil || seq == 0 {
		httpx.WriteError(w, r, &httpx.Error{Status: http.StatusNotFound, Code: "not_found",
			Msg: fmt.Sprintf("no status at %q: expected %s{id} with the id a publish answered", r.URL.Path, p.statusPrefix)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	st, err := p.broker.Status(ctx, p.queue, seq)
	if err != nil {
		e := unavailable(err, p.timeout)
		if e == nil {
			e = &httpx.Error{Status: http.StatusBadGateway, Code: "status_failed",
				Msg: fmt.Sprintf("looking up message %s of queue %q failed", id, p.queue), Err: err}
		}
		httpx.WriteError(w, r, e)
		return
	}
	writeJSON(w, r, http.StatusOK, statusAnswer{ID: id, Queue: p.queue, State: string(st.State), Deliveries: st.Deliveries,
		PublishedAt: st.PublishedAt, AvailableAt: st.AvailableAt, VisibleAt: st.VisibleAt, SettledAt: st.SettledAt, Reason: st.Reason})
}

// writeJSON answers v as JSON and records the status for logs and metrics.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		httpx.WriteError(w, r, &httpx.Error{Status: http.StatusInternalServerError, Code: "internal", Msg: "encoding the answer", Err: err})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	httpx.RecordStatus(r, status)
	_, _ = w.Write(append(data, '\n'))
}
