// Package publish answers gateway routes asynchronously: each request is
// published durably to a switchyard broker queue and answered 202 Accepted
// with a tracking id (the broker's message id) and a status URL, which the
// status handler answers by asking the broker (see docs/api-gateway.md).
//
// YAML shape, defaults in comments:
//
//	broker:                     # top level (BrokerConfig)
//	  url: http://127.0.0.1:7401  # the broker's HTTP API; required
//	  timeout: 10s              # per broker call; default 10s
//	routes:
//	  - match: { path_prefix: /orders }
//	    publish:                # the route's section (Config)
//	      queue: orders         # required; must exist on the broker
//	      headers: [X-Tenant]   # default X-Consumer, X-Consumer-Tier, X-Scopes, Content-Type, X-Request-Id
package publish

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/broker"
	brokerclient "github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/httpx"
	"golang.org/x/net/http/httpguts"
)

// Defaults of publish routes.
const (
	// DefaultMaxBody caps a published request body when the route sets
	// no max_request_body.
	DefaultMaxBody = 1 << 20
	// DefaultTimeout bounds one call to the broker.
	DefaultTimeout = 10 * time.Second
	// maxIdempotencyKey is the longest Idempotency-Key accepted.
	maxIdempotencyKey = 255
	// StatusSegment is the path segment of status lookups:
	// {path or path_prefix}/_status/{id}.
	StatusSegment = "/_status/"
)

// HeaderIdempotencyKey makes a client's retries of a publish idempotent:
// repeats within the queue's dedup_window answer the first id and are not
// enqueued again.
const HeaderIdempotencyKey = "Idempotency-Key"

// defaultHeaders are copied into message headers when a route does not
// list its own: the identity the gateway established, the body's type and
// the request id.
var defaultHeaders = []string{"X-Consumer", "X-Consumer-Tier", "X-Scopes", "Content-Type", "X-Request-Id"}

// brokerClient is what publish routes need from the broker;
// *brokerclient.HTTP implements it over the broker's HTTP API.
type brokerClient interface {
	// Publish returns once the messages are durable (see brokerclient.Publisher).
	Publish(ctx context.Context, queue string, msgs ...broker.Message) ([]broker.PublishResult, error)
	// Status returns the state of a message published earlier.
	Status(ctx context.Context, queue string, seq uint64) (broker.MessageStatus, error)
}

var _ brokerClient = (*brokerclient.HTTP)(nil)

// Config is a route's publish section.
type Config struct {
	// Queue is the broker queue the requests go to; it must exist on the
	// broker (declare it there). Required.
	Queue string `yaml:"queue"`
	// Headers are the request headers copied into the message headers
	// (under lower-case names). Default: X-Consumer, X-Consumer-Tier,
	// X-Scopes, Content-Type and X-Request-Id. The request method and URI
	// are always added as x-request-method and x-request-uri.
	Headers []string `yaml:"headers"`
}

// Validate reports every problem of c at once (errors.Join), each a
// *config.FieldError relative to the publish section. It does not modify
// c. New also checks the queue name.
func (c Config) Validate() error {
	var errs []error
	if c.Queue == "" {
		errs = append(errs, config.Fieldf("queue", "missing: expected the name of a broker queue"))
	}
	for j, h := range c.Headers {
		if !httpguts.ValidHeaderFieldName(h) {
			errs = append(errs, config.Fieldf(fmt.Sprintf("headers[%d]", j), "invalid header name %q", h))
		}
	}
	return errors.Join(errs...)
}

// BrokerConfig locates the message broker (`switchyard broker`) by its
// HTTP API.
type BrokerConfig struct {
	// URL is the base URL of the broker's HTTP API, e.g.
	// http://127.0.0.1:7401 (http or https, no query). Required. Clients
	// never see it: the gateway answers status lookups itself.
	URL string `yaml:"url"`
	// Timeout bounds each call to the broker: a publish (including a wait
	// for room in a queue with overflow: block) or a status lookup.
	// Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// User logs in to a broker with users (HTTP Basic) with Password.
	// Default none.
	User string `yaml:"user"`
	// Password of User: "env:NAME" or "file:PATH", never inline.
	Password string `yaml:"password"`
	// Token is a bearer token instead of User and Password: "env:NAME"
	// or "file:PATH", never inline.
	Token string `yaml:"token"`
	// CA is a PEM file of the CA that signed an https:// broker's
	// certificate. Default: the system's roots.
	CA string `yaml:"ca"`
	// Cert and Key are PEM files of a client certificate (mTLS) for an
	// https:// broker. Default none.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Validate reports the problems of c, each a *config.FieldError relative
// to the broker section. It does not modify c.
func (c BrokerConfig) Validate() error {
	var errs []error
	if err := validBrokerURL(c.URL); err != nil {
		errs = append(errs, &config.FieldError{Path: "url", Err: err})
	}
	for _, f := range []struct{ key, v string }{{"password", c.Password}, {"token", c.Token}} {
		if f.v != "" && !(strings.HasPrefix(f.v, "env:") && len(f.v) > 4) && !(strings.HasPrefix(f.v, "file:") && len(f.v) > 5) {
			errs = append(errs, config.Fieldf(f.key, "expected env:NAME or file:PATH: a secret does not belong in the config file"))
		}
	}
	if (c.User == "") != (c.Password == "") {
		errs = append(errs, config.Fieldf("user", "user and password go together"))
	}
	if c.Token != "" && c.User != "" {
		errs = append(errs, config.Fieldf("token", "token or user and password, not both"))
	}
	if (c.Cert == "") != (c.Key == "") {
		errs = append(errs, config.Fieldf("cert", "cert and key go together"))
	}
	if (c.CA != "" || c.Cert != "") && !strings.HasPrefix(c.URL, "https://") {
		errs = append(errs, config.Fieldf("ca", "ca, cert and key need an https:// url"))
	}
	return errors.Join(errs...)
}

// secret reads an env:NAME or file:PATH value.
func secret(spec string) (string, error) {
	if name, ok := strings.CutPrefix(spec, "env:"); ok {
		v, set := os.LookupEnv(name)
		if !set || v == "" {
			return "", fmt.Errorf("environment variable %q is not set", name)
		}
		return v, nil
	}
	b, err := os.ReadFile(strings.TrimPrefix(spec, "file:"))
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// clientAuth resolves c's credentials and TLS settings.
func (c BrokerConfig) clientAuth() (brokerclient.Credentials, *tls.Config, error) {
	var cr brokerclient.Credentials
	var err error
	if c.Token != "" {
		if cr.Token, err = secret(c.Token); err != nil {
			return cr, nil, config.Fieldf("token", "%v", err)
		}
	}
	if c.User != "" {
		cr.User = c.User
		if cr.Password, err = secret(c.Password); err != nil {
			return cr, nil, config.Fieldf("password", "%v", err)
		}
	}
	if c.CA == "" && c.Cert == "" {
		return cr, nil, nil
	}
	tc, err := brokerclient.LoadTLS(c.CA, c.Cert, c.Key, "")
	if err != nil {
		return cr, nil, config.Fieldf("ca", "%v", err)
	}
	return cr, tc, nil
}

// validBrokerURL checks the broker's HTTP API base URL.
func validBrokerURL(s string) error {
	if s == "" {
		return errors.New("missing: expected the broker's HTTP API base URL, e.g. http://127.0.0.1:7401")
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("invalid URL %q: %v", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("invalid URL %q: expected an http:// or https:// URL", s)
	case u.Host == "":
		return fmt.Errorf("invalid URL %q: no host", s)
	case u.Port() != "" && !validPort(u.Port()):
		return fmt.Errorf("invalid URL %q: port %q out of range: expected 1 to 65535", s, u.Port())
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("invalid URL %q: expected a base URL without user, query or fragment", s)
	}
	return nil
}

// validPort reports whether p is a decimal port from 1 to 65535.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// Options are what a publisher needs beyond its section.
type Options struct {
	// Broker is the top-level broker section; its URL must be valid.
	Broker BrokerConfig
	// Base is the route's exact path or path prefix: status lookups are
	// answered at {Base}/_status/{id} (a trailing slash is dropped).
	Base string
	// MaxBody caps a request body in bytes (413 beyond). Default
	// DefaultMaxBody.
	MaxBody int64
	// Transport carries the calls to the broker; nil uses
	// http.DefaultClient.
	Transport http.RoundTripper
}

// Publisher answers a publish route: it publishes each request to a queue
// and answers 202 with a tracking id (the broker's message id) and a
// status URL, which its status handler answers by asking the broker.
type Publisher struct {
	queue        string
	broker       brokerClient
	timeout      time.Duration // per broker call
	maxBody      int64
	headers      []string // canonical request header names copied into the message
	statusPrefix string   // e.g. "/orders/_status/"
}

// New builds the publisher of a route whose section was validated
// (Config.Validate). An invalid queue name is a *config.FieldError at
// "queue".
func New(cfg Config, o Options) (*Publisher, error) {
	if !broker.ValidName(cfg.Queue) {
		return nil, config.Fieldf("queue", "invalid queue name %q: expected letters, digits, '.', '_' or '-'", cfg.Queue)
	}
	creds, tc, err := o.Broker.clientAuth()
	if err != nil {
		return nil, fmt.Errorf("broker.%w", err)
	}
	hc := &brokerclient.HTTP{Base: o.Broker.URL, Credentials: creds}
	if o.Transport != nil {
		hc.Client = &http.Client{Transport: o.Transport}
	}
	if tc != nil {
		// Its own connections: the shared transport has no client TLS.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if base, ok := o.Transport.(*http.Transport); ok {
			tr = base.Clone()
		}
		tr.TLSClientConfig = tc
		hc.Client = &http.Client{Transport: tr}
	}
	p := &Publisher{
		queue:        cfg.Queue,
		broker:       hc,
		timeout:      o.Broker.Timeout,
		maxBody:      o.MaxBody,
		statusPrefix: strings.TrimSuffix(o.Base, "/") + StatusSegment,
	}
	if p.timeout == 0 {
		p.timeout = DefaultTimeout
	}
	if p.maxBody <= 0 {
		p.maxBody = DefaultMaxBody
	}
	hs := cfg.Headers
	if len(hs) == 0 {
		hs = defaultHeaders
	}
	for _, h := range hs {
		p.headers = append(p.headers, http.CanonicalHeaderKey(h))
	}
	return p, nil
}

// StatusPrefix is the path prefix of the status lookups, ending in a
// slash: {Base}/_status/.
func (p *Publisher) StatusPrefix() string { return p.statusPrefix }

// Status returns the handler of status lookups, GET {StatusPrefix}{id}.
func (p *Publisher) Status() http.Handler { return http.HandlerFunc(p.status) }

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
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
func (p *Publisher) msgID(r *http.Request) (string, *httpx.Error) {
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
func (p *Publisher) readBody(r *http.Request) ([]byte, *httpx.Error) {
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
func (p *Publisher) publishError(err error) *httpx.Error {
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
func (p *Publisher) status(w http.ResponseWriter, r *http.Request) {
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
