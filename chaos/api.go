package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/switchyard/switchyard/httpx"
)

// Server manages fault proxies over HTTP/JSON (`switchyard chaos proxy`),
// in the shape of Toxiproxy's API:
//
//	GET    /proxies                        every proxy with its faults
//	POST   /proxies                        {"name","listen","upstream"} -> 201
//	GET    /proxies/{name}                 one proxy
//	POST   /proxies/{name}                 {"enabled": false} cuts it off, true restores it
//	DELETE /proxies/{name}                 stops it
//	POST   /proxies/{name}/faults          a fault -> 201 (replaces one of the same name)
//	DELETE /proxies/{name}/faults/{fault}  removes it
//	POST   /reset                          removes every fault and enables every proxy
//
// A fault in JSON: {"name": "slow", "type": "latency", "stream":
// "downstream", "toxicity": 1, "latency": "200ms", "jitter": "50ms"};
// durations are Go duration strings, rate is bytes per second.
type Server struct {
	mu      sync.Mutex
	proxies map[string]*Proxy
	log     *slog.Logger
}

// NewServer returns a Server with no proxies.
func NewServer(log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{proxies: map[string]*Proxy{}, log: log}
}

// Add starts a proxy and manages it.
func (s *Server) Add(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Name == "" || len(cfg.Name) > 64 || strings.ContainsAny(cfg.Name, "/ ") {
		return nil, fmt.Errorf("name %q: want 1 to 64 characters without '/' or spaces", cfg.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.proxies[cfg.Name]; ok {
		return nil, fmt.Errorf("proxy %q exists", cfg.Name)
	}
	if len(s.proxies) >= 256 {
		return nil, errors.New("at most 256 proxies")
	}
	cfg.Log = s.log
	p, err := Listen(cfg)
	if err != nil {
		return nil, err
	}
	s.proxies[cfg.Name] = p
	return p, nil
}

// Close stops every proxy.
func (s *Server) Close() error {
	s.mu.Lock()
	ps := s.proxies
	s.proxies = map[string]*Proxy{}
	s.mu.Unlock()
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// faultJSON is a Fault on the wire, durations as strings.
type faultJSON struct {
	Name      string    `json:"name"`
	Kind      Kind      `json:"type"`
	Direction Direction `json:"stream"`
	Toxicity  float64   `json:"toxicity,omitempty"`
	Latency   string    `json:"latency,omitempty"`
	Jitter    string    `json:"jitter,omitempty"`
	Rate      int64     `json:"rate,omitempty"`
	Delay     string    `json:"delay,omitempty"`
	Bytes     int64     `json:"bytes,omitempty"`
}

func toJSON(f Fault) faultJSON {
	d := func(v time.Duration) string {
		if v == 0 {
			return ""
		}
		return v.String()
	}
	return faultJSON{Name: f.Name, Kind: f.Kind, Direction: f.Direction, Toxicity: f.Toxicity,
		Latency: d(f.Latency), Jitter: d(f.Jitter), Rate: f.Rate, Delay: d(f.Delay), Bytes: f.Bytes}
}

func (j faultJSON) fault() (Fault, error) {
	f := Fault{Name: j.Name, Kind: j.Kind, Direction: j.Direction, Toxicity: j.Toxicity, Rate: j.Rate, Bytes: j.Bytes}
	if f.Direction == "" {
		f.Direction = Downstream
	}
	var errs []error
	parse := func(name, s string, into *time.Duration) {
		if s == "" {
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want a duration such as 200ms", name, s))
			return
		}
		*into = d
	}
	parse("latency", j.Latency, &f.Latency)
	parse("jitter", j.Jitter, &f.Jitter)
	parse("delay", j.Delay, &f.Delay)
	if err := errors.Join(errs...); err != nil {
		return f, err
	}
	return f, f.Validate()
}

type proxyJSON struct {
	Name     string      `json:"name"`
	Listen   string      `json:"listen"`
	Upstream string      `json:"upstream"`
	Enabled  bool        `json:"enabled"`
	Faults   []faultJSON `json:"faults"`
	Stats    Stats       `json:"stats"`
}

func describe(p *Proxy) proxyJSON {
	c := p.Config()
	out := proxyJSON{Name: c.Name, Listen: c.Listen, Upstream: c.Upstream, Enabled: p.Enabled(), Faults: []faultJSON{}, Stats: p.Stats()}
	for _, f := range p.Faults() {
		out.Faults = append(out.Faults, toJSON(f))
	}
	return out
}

func (s *Server) get(name string) *Proxy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proxies[name]
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeErr answers an RFC 9457 problem details object (httpx.Problem).
func writeErr(w http.ResponseWriter, code int, msg string) {
	httpx.WriteProblem(w, code, "", msg)
}

// decode reads a JSON body of at most 64 KiB into v, refusing unknown
// fields.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// crossOrigin is net/http's CSRF check (Sec-Fetch-Site, else Origin
// against Host; GET, HEAD and OPTIONS always pass).
var crossOrigin = http.NewCrossOriginProtection()

// Handler is the HTTP API. A change sent by a web page of another origin
// (a form posted to a loopback chaos API: no preflight, no credential
// needed) is refused with 403; programs (curl, the CLI, Go clients) send
// neither Sec-Fetch-Site nor Origin and are not affected.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := crossOrigin.Check(r); err != nil {
			writeErr(w, http.StatusForbidden, r.Method+" "+r.URL.Path+" from another origin (a web page) is refused: the chaos API takes changes only from programs")
			return
		}
		mux.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /proxies", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		names := make([]string, 0, len(s.proxies))
		for n := range s.proxies {
			names = append(names, n)
		}
		s.mu.Unlock()
		sort.Strings(names)
		out := map[string]proxyJSON{}
		for _, n := range names {
			if p := s.get(n); p != nil {
				out[n] = describe(p)
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /proxies", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name     string `json:"name"`
			Listen   string `json:"listen"`
			Upstream string `json:"upstream"`
			Enabled  *bool  `json:"enabled"`
		}
		if !decode(w, r, &in) {
			return
		}
		p, err := s.Add(ProxyConfig{Name: in.Name, Listen: in.Listen, Upstream: in.Upstream})
		if err != nil {
			code := http.StatusBadRequest
			if strings.Contains(err.Error(), "exists") {
				code = http.StatusConflict
			}
			writeErr(w, code, err.Error())
			return
		}
		if in.Enabled != nil && !*in.Enabled {
			p.SetEnabled(false)
		}
		writeJSON(w, http.StatusCreated, describe(p))
	})
	mux.HandleFunc("GET /proxies/{name}", func(w http.ResponseWriter, r *http.Request) {
		p := s.get(r.PathValue("name"))
		if p == nil {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("no proxy %q", r.PathValue("name")))
			return
		}
		writeJSON(w, http.StatusOK, describe(p))
	})
	mux.HandleFunc("POST /proxies/{name}", func(w http.ResponseWriter, r *http.Request) {
		p := s.get(r.PathValue("name"))
		if p == nil {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("no proxy %q", r.PathValue("name")))
			return
		}
		var in struct {
			Enabled *bool `json:"enabled"`
		}
		if !decode(w, r, &in) {
			return
		}
		if in.Enabled == nil {
			writeErr(w, http.StatusBadRequest, `missing "enabled": want {"enabled": true|false}`)
			return
		}
		p.SetEnabled(*in.Enabled)
		writeJSON(w, http.StatusOK, describe(p))
	})
	mux.HandleFunc("DELETE /proxies/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		s.mu.Lock()
		p := s.proxies[name]
		delete(s.proxies, name)
		s.mu.Unlock()
		if p == nil {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("no proxy %q", name))
			return
		}
		p.Close()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /proxies/{name}/faults", func(w http.ResponseWriter, r *http.Request) {
		p := s.get(r.PathValue("name"))
		if p == nil {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("no proxy %q", r.PathValue("name")))
			return
		}
		var in faultJSON
		if !decode(w, r, &in) {
			return
		}
		f, err := in.fault()
		if err == nil {
			err = p.SetFault(f)
		}
		if err != nil {
			writeErr(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, describe(p))
	})
	mux.HandleFunc("DELETE /proxies/{name}/faults/{fault}", func(w http.ResponseWriter, r *http.Request) {
		p := s.get(r.PathValue("name"))
		if p == nil {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("no proxy %q", r.PathValue("name")))
			return
		}
		if !p.RemoveFault(r.PathValue("fault")) {
			writeErr(w, http.StatusNotFound, fmt.Sprintf("proxy %q has no fault %q", r.PathValue("name"), r.PathValue("fault")))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		ps := make([]*Proxy, 0, len(s.proxies))
		for _, p := range s.proxies {
			ps = append(ps, p)
		}
		s.mu.Unlock()
		for _, p := range ps {
			for _, f := range p.Faults() {
				p.RemoveFault(f.Name)
			}
			p.SetEnabled(true)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return h
}
