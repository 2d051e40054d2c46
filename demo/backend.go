// Package demo provides small HTTP backends that show what the gateway
// does: each answers with its own name, and can be made slow, failing or
// unhealthy on request, so balancing, retries, breakers and health checks
// can be watched with curl.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Backend is one demo service instance.
type Backend struct {
	// Name is reported in every response.
	Name string

	unhealthy atomic.Bool
	requests  atomic.Int64
	srv       *http.Server
	ln        net.Listener
}

// Start listens on addr ("127.0.0.1:0" for any port) and serves until
// Close or ctx is done.
//
// Endpoints (any other path echoes the request):
//
//	GET  /healthz              200, or 503 after POST /demo/health?ok=false
//	POST /demo/health?ok=BOOL  make this backend healthy or unhealthy
//	GET  /slow?d=250ms         answer after a delay
//	GET  /status/{code}        answer with that status
//	GET  /sse?n=5&every=100ms  a Server-Sent Events stream of n events
func Start(ctx context.Context, name, addr string) (*Backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo backend %s: listening on %s: %w", name, addr, err)
	}
	b := &Backend{Name: name, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if b.unhealthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("POST /demo/health", func(w http.ResponseWriter, r *http.Request) {
		ok, err := strconv.ParseBool(r.URL.Query().Get("ok"))
		if err != nil {
			http.Error(w, "expected ?ok=true or ?ok=false", http.StatusBadRequest)
			return
		}
		b.unhealthy.Store(!ok)
		b.reply(w, r, http.StatusOK)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d < 0 || d > time.Minute {
			http.Error(w, "expected ?d=DURATION up to 1m", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		b.reply(w, r, http.StatusOK)
	})
	mux.HandleFunc("GET /status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "expected a status code 200-599", http.StatusBadRequest)
			return
		}
		b.reply(w, r, code)
	})
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if n <= 0 || n > 1000 {
			n = 5
		}
		every, err := time.ParseDuration(r.URL.Query().Get("every"))
		if err != nil || every <= 0 || every > 10*time.Second {
			every = 100 * time.Millisecond
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		rc := http.NewResponseController(w)
		for i := 1; i <= n; i++ {
			data, _ := json.Marshal(struct {
				Backend string `json:"backend"`
				Event   int    `json:"event"`
			}{b.Name, i})
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", i, data)
			if err := rc.Flush(); err != nil {
				return
			}
			if i < n {
				select {
				case <-time.After(every):
				case <-r.Context().Done():
					return
				}
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { b.reply(w, r, http.StatusOK) })
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := b.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener was closed under us; Close reports nothing more useful
		}
	}()
	go func() {
		<-ctx.Done()
		_ = b.Close()
	}()
	return b, nil
}

// Addr returns the backend's listen address.
func (b *Backend) Addr() string { return b.ln.Addr().String() }

// Requests returns how many requests the backend answered.
func (b *Backend) Requests() int64 { return b.requests.Load() }

// Close stops the backend at once.
func (b *Backend) Close() error { return b.srv.Close() }

func (b *Backend) reply(w http.ResponseWriter, r *http.Request, status int) {
	b.requests.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Backend", b.Name)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"backend":      b.Name,
		"method":       r.Method,
		"path":         r.URL.Path,
		"query":        r.URL.RawQuery,
		"status":       status,
		"request_id":   r.Header.Get("X-Request-Id"),
		"forwarded":    r.Header.Get("X-Forwarded-For"),
		"traceparent":  r.Header.Get("Traceparent"),
		"idempotency":  r.Header.Get("Idempotency-Key"),
		"requests_now": b.requests.Load(),
	})
}
