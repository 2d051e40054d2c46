// Package dashboard serves the operator's live dashboard: one web page
// (embedded HTML, CSS and JavaScript, nothing fetched from elsewhere) that
// draws the topology from clients through the gateway's routes and
// upstreams to their targets and broker queues, with health, breakers,
// rates, latency, SLOs, rollouts, faults and recent slow or failed traces,
// updated once a second over Server-Sent Events.
//
// The package knows nothing of the gateway: it reads Sources (functions,
// or an admin API handler called in process with FromAdmin), and the
// gateway mounts its Handler on the admin listener.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/switchyard/switchyard/httpx"
)

//go:embed static
var staticFiles embed.FS

// Paths the dashboard serves.
const (
	PathPage   = "/admin/dashboard"
	PathEvents = "/admin/dashboard/events"
	PathStatic = "/admin/dashboard/static/"
)

// DefaultInterval is how often a snapshot is pushed.
const DefaultInterval = time.Second

// csp is the Content-Security-Policy of every answer: scripts, styles and
// connections only from the admin listener itself, no inline code, no
// frames, no plugins, no forms.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Options configure a Server.
type Options struct {
	// Config is the dashboard block of the gateway config.
	Config Config
	// Sources are what the dashboard shows.
	Sources Sources
	// Interval between snapshots. Default 1s.
	Interval time.Duration
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
	// WriteTimeout closes a stream whose client takes longer than this to
	// accept one snapshot. Default 10s.
	WriteTimeout time.Duration
}

// Server is the dashboard: an http.Handler for its paths. Snapshots are
// built by one goroutine, only while at least one stream is open, and
// handed to every stream without waiting: a slow client misses
// intermediate snapshots (it always gets the newest), never delays the
// others.
type Server struct {
	opts   Options
	static http.Handler
	max    int

	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	stop    chan struct{} // closed to stop the running producer; nil when none runs
	done    chan struct{} // closed when that producer has exited
	latest  []byte        // the last snapshot's event, for new subscribers
	col     *collector
	closing bool
}

// subscriber is one open stream: a mailbox holding the newest snapshot
// not yet written.
type subscriber struct {
	mail chan []byte // capacity 1
}

// New returns a dashboard; it starts nothing until a stream opens.
func New(opts Options) (*Server, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("dashboard config: %w", err)
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, max: opts.Config.MaxStreams, subs: map[*subscriber]struct{}{},
		static: http.StripPrefix(PathStatic, http.FileServerFS(sub))}
	if s.max == 0 {
		s.max = DefaultMaxStreams
	}
	s.col = newCollector(opts.Sources, opts.Now, opts.Interval)
	return s, nil
}

// Streams returns how many event streams are open.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// Close ends every open stream and the producer, and refuses new streams.
func (s *Server) Close() {
	s.mu.Lock()
	s.closing = true
	stop, done := s.stop, s.done
	if stop != nil {
		close(stop)
		s.stop = nil
	}
	for sub := range s.subs {
		close(sub.mail)
		delete(s.subs, sub)
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// ServeHTTP serves the page, its files and the event stream.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if s.opts.Config.Disabled {
		writeError(w, http.StatusNotFound, "the dashboard is disabled (dashboard.disabled in the gateway config)")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not served on %s: expected GET", r.Method, r.URL.Path))
		return
	}
	switch p := r.URL.Path; {
	case p == PathPage+"/":
		// The page's links are relative to /admin/dashboard.
		http.Redirect(w, r, PathPage, http.StatusMovedPermanently)
	case p == PathPage:
		page, err := staticFiles.ReadFile("static/index.html")
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	case p == PathEvents:
		s.events(w, r)
	case len(p) > len(PathStatic) && p[:len(PathStatic)] == PathStatic:
		h.Set("Cache-Control", "no-cache")
		s.static.ServeHTTP(w, r)
	default:
		writeError(w, http.StatusNotFound, "no dashboard page "+p)
	}
}

// events streams snapshots as Server-Sent Events ("event: snapshot",
// data one JSON line) until the client goes or the server closes.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	sub, ok := s.subscribe()
	if !ok {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable,
			fmt.Sprintf("too many dashboard streams open (%d, dashboard.max_streams): close one or raise the limit", s.max))
		return
	}
	defer s.unsubscribe(sub)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The retry hint first, so a browser reconnects after a second.
	if !write([]byte("retry: 1000\n\n")) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, open := <-sub.mail:
			if !open || !write(ev) {
				return
			}
		}
	}
}

// subscribe registers a stream, starting the producer for the first one.
func (s *Server) subscribe() (*subscriber, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || len(s.subs) >= s.max {
		return nil, false
	}
	sub := &subscriber{mail: make(chan []byte, 1)}
	s.subs[sub] = struct{}{}
	if s.latest != nil {
		sub.mail <- s.latest
	}
	if s.stop == nil {
		// A producer stopped earlier may still be finishing its snapshot:
		// the new one waits for it, so one goroutine owns the collector.
		prev := s.done
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.produce(s.stop, s.done, prev)
	}
	return sub, true
}

// unsubscribe removes a stream, stopping the producer after the last.
func (s *Server) unsubscribe(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[sub]; !ok {
		return // Close took it
	}
	delete(s.subs, sub)
	if len(s.subs) == 0 && s.stop != nil {
		close(s.stop)
		s.stop = nil
		s.latest = nil // stale by the time a page opens again
	}
}

// produce builds a snapshot at once and then every interval, handing each
// to every subscriber, until stop closes.
func (s *Server) produce(stop, done, prev chan struct{}) {
	defer close(done)
	if prev != nil {
		<-prev
	}
	s.col.reset()
	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Interval)
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		snap := s.col.collect(ctx)
		cancel()
		ev := encodeEvent(snap)
		s.mu.Lock()
		select {
		case <-stop:
			s.mu.Unlock()
			return
		default:
		}
		s.latest = ev
		for sub := range s.subs {
			select { // drop the unread older snapshot: the newest wins
			case <-sub.mail:
			default:
			}
			sub.mail <- ev
		}
		s.mu.Unlock()
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// encodeEvent renders a snapshot as one SSE event.
func encodeEvent(snap Snapshot) []byte {
	data, err := json.Marshal(snap)
	if err != nil {
		data, _ = json.Marshal(map[string]string{"error": "encoding the snapshot: " + err.Error()})
	}
	out := make([]byte, 0, len(data)+32)
	out = append(out, "event: snapshot\ndata: "...)
	out = append(out, data...)
	return append(out, "\n\n"...)
}

// writeError answers an RFC 9457 problem details object (httpx.Problem).
func writeError(w http.ResponseWriter, code int, msg string) {
	httpx.WriteProblem(w, code, "", msg)
}
