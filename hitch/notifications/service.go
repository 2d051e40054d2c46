package notifications

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/store"
)

// Config tunes the service. The zero value takes every default.
type Config struct {
	// ClientBuffer is how many notifications wait for one slow client
	// before it is dropped (its connection closed; it reconnects with
	// Last-Event-ID). Default 64.
	ClientBuffer int `yaml:"client_buffer"`
	// Replay is how many recent notifications (of all users) this replica
	// keeps for clients that reconnect with Last-Event-ID. Default 4096.
	Replay int `yaml:"replay"`
	// MaxClients caps the connections this replica serves at once; more
	// are answered 503 with Retry-After. Default 10000.
	MaxClients int `yaml:"max_clients"`
	// Heartbeat is the interval of SSE comment lines and WebSocket pings
	// that keep idle connections (and the proxies on their way) alive.
	// Default 15s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// WriteTimeout bounds one write to a client (and a WebSocket ping's
	// pong): a client that takes nothing for this long is dropped.
	// Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// ReadLimit is the largest WebSocket message a client may send, in
	// bytes; a larger one closes the connection (1009). Clients have
	// nothing to say: any data message closes it too (1008). Default 4096.
	ReadLimit int64 `yaml:"read_limit"`
	// OriginPatterns are the extra origins (host patterns, as
	// path.Match) allowed to open the WebSocket besides the request's own
	// host. Default none.
	OriginPatterns []string `yaml:"origin_patterns"`
	// Retry is how long Run waits before subscribing again after a
	// subscription failed. Default 500ms.
	Retry time.Duration `yaml:"retry"`

	Logger *slog.Logger `yaml:"-"` // default: discard
}

// Defaults.
const (
	DefaultClientBuffer = 64
	DefaultReplay       = 4096
	DefaultMaxClients   = 10000
	DefaultHeartbeat    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultReadLimit    = 4096
	DefaultRetry        = 500 * time.Millisecond
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.ClientBuffer == 0 {
		c.ClientBuffer = DefaultClientBuffer
	}
	if c.Replay == 0 {
		c.Replay = DefaultReplay
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.ReadLimit == 0 {
		c.ReadLimit = DefaultReadLimit
	}
	if c.Retry == 0 {
		c.Retry = DefaultRetry
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every setting out of range, by its key.
func (c Config) Validate() error {
	var errs []error
	pos := func(key string, ok bool, v any) {
		if !ok {
			errs = append(errs, fmt.Errorf("notifications.%s: %v: want a positive value", key, v))
		}
	}
	pos("client_buffer", c.ClientBuffer > 0, c.ClientBuffer)
	pos("replay", c.Replay > 0, c.Replay)
	pos("max_clients", c.MaxClients > 0, c.MaxClients)
	pos("heartbeat", c.Heartbeat > 0, c.Heartbeat)
	pos("write_timeout", c.WriteTimeout > 0, c.WriteTimeout)
	pos("read_limit", c.ReadLimit > 0, c.ReadLimit)
	pos("retry", c.Retry > 0, c.Retry)
	return errors.Join(errs...)
}

// Topics the service reads live.
var Topics = []string{hitch.TopicRides, hitch.TopicMatching, hitch.TopicPayments}

// Service pushes notifications to the clients connected to this replica.
type Service struct {
	cfg    Config
	bus    message.Subscriber
	hub    *hub
	live   atomic.Int32 // topic subscriptions running (not in back-off)
	runs   atomic.Bool
	pushed atomic.Int64
}

// New makes the service. It has no database (db is ignored and may be
// nil): what it pushes is derived from events, and a client that missed
// one reads the ride. bus is read in Run.
func New(ctx context.Context, db *store.DB, bus message.Backend, cfg Config) (*Service, error) {
	_ = ctx
	_ = db
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, hub: newHub(cfg.ClientBuffer, cfg.Replay)}
	if bus != nil {
		s.bus = bus
	}
	return s, nil
}

// Run subscribes to Topics live and pushes what they carry until ctx
// ends, then returns nil. A failed subscription is retried after
// Config.Retry; what was published meanwhile is not pushed (clients read
// the ride). Every replica runs it and sees every event.
func (s *Service) Run(ctx context.Context) error {
	if s.bus == nil {
		return errors.New("notifications: Run needs a message backend")
	}
	s.runs.Store(true)
	defer s.runs.Store(false)
	done := make(chan struct{}, len(Topics))
	for _, topic := range Topics {
		go func() {
			defer func() { done <- struct{}{} }()
			s.follow(ctx, topic)
		}()
	}
	for range Topics {
		<-done
	}
	return nil
}

// follow keeps one live subscription to topic until ctx ends.
func (s *Service) follow(ctx context.Context, topic string) {
	for ctx.Err() == nil {
		s.live.Add(1)
		err := s.bus.Subscribe(ctx, "topic:"+topic, message.SubscribeOptions{}, func(d *message.Delivery) {
			s.Push(d.Headers["kind"], d.ID, d.Body)
			_ = d.Ack(ctx) // a topic does not redeliver; this only settles it
		})
		s.live.Add(-1)
		if ctx.Err() != nil {
			return
		}
		s.cfg.Logger.Warn("notifications: subscription failed; retrying", "topic", topic, "error", err, "retry", s.cfg.Retry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Retry):
		}
	}
}

// Push turns one event (its kind header, id and body) into its
// notifications and hands them to the connected clients of their users;
// it never blocks on a client. It returns how many notifications were
// made (duplicates of one fact from two sources are made once).
func (s *Service) Push(kind, id string, body []byte) int {
	n := 0
	for _, note := range notesFor(kind, id, body) {
		if s.hub.publish(note) {
			n++
		}
	}
	s.pushed.Add(int64(n))
	return n
}

// Clients returns the clients connected to this replica.
func (s *Service) Clients() int { return s.hub.count() }

// Dropped returns how many clients were dropped for not reading.
func (s *Service) Dropped() int64 { return s.hub.kicked.Load() }

// Handler serves GET /v1/events (SSE), GET /v1/events/ws (WebSocket) and
// GET /healthz.
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h http.HandlerFunc
		switch r.URL.Path {
		case "/v1/events":
			h = s.serveSSE
		case "/v1/events/ws":
			h = s.serveWS
		case "/healthz":
			h = s.serveHealth
		default:
			writeError(w, http.StatusNotFound, "not_found", "no such path: "+r.URL.Path)
			return
		}
		if r.Method != http.MethodGet { // HEAD too: a stream has no head of its own
			w.Header().Set("Allow", "GET")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" "+r.URL.Path+": only GET")
			return
		}
		h(w, r)
	})
}

func (s *Service) serveHealth(w http.ResponseWriter, r *http.Request) {
	live := int(s.live.Load())
	status := http.StatusOK
	if s.bus != nil && s.runs.Load() && live < len(Topics) {
		status = http.StatusServiceUnavailable // a subscription is in back-off
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"status": http.StatusText(status), "clients": s.hub.count(), "subscriptions": live,
		"dropped": s.hub.kicked.Load(), "pushed": s.pushed.Load(),
	})
}

// caller checks the gateway's identity headers, answering 401 without.
func caller(w http.ResponseWriter, r *http.Request) (hitch.Caller, bool) {
	c, ok := hitch.CallerOf(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hitch"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "no caller: this route needs a bearer token verified by the gateway")
	}
	return c, ok
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code})
}

func (s *Service) busy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "too_many_clients",
		fmt.Sprintf("this replica serves its maximum of %d connections", s.cfg.MaxClients))
}

// lastEventID is the client's Last-Event-ID (header, or the
// last_event_id query parameter for clients that cannot set headers),
// empty when absent or not a valid id.
func lastEventID(r *http.Request) string {
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = r.URL.Query().Get("last_event_id")
	}
	if id == "" || sseID(id) != id {
		return ""
	}
	return id
}

// frame is a WebSocket message: one notification.
type frame struct {
	ID    string          `json:"id"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}
