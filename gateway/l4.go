package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/l4"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/upstream"
)

// L4Listener is a TCP or UDP listener of the network load balancer,
// balanced over an upstream's targets with its policy, health checks and
// outlier detection (shared with the L7 routes using the same upstream).
type L4Listener struct {
	// Name labels metrics and logs. Default l4_<index>.
	Name string `yaml:"name"`
	// Listen is host:port. Required.
	Listen string `yaml:"listen"`
	// Protocol is tcp (default) or udp.
	Protocol string `yaml:"protocol"`
	// Upstream serves connections (required unless sni routes cover them).
	Upstream string `yaml:"upstream"`
	// TLS terminates TLS with this certificate (tcp only).
	TLS *TLS `yaml:"tls"`
	// SNI routes TLS connections by the server name of their ClientHello
	// without decrypting them (tcp only; not with tls).
	SNI []L4SNIRoute `yaml:"sni"`
	// ProxyProtocol sends a PROXY protocol header (v1 or v2; v2 only for
	// udp) to the upstream first, carrying the client's address.
	ProxyProtocol string `yaml:"proxy_protocol"`
	// MaxConnections (udp: sessions) in total and per client IP; 0 means
	// no limit, except for udp sessions in total: 0 means
	// l4.DefaultMaxUDPSessions (4096), since any spoofed source opens one.
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// ConnectTimeout bounds a connect to a target (tcp). Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// IdleTimeout ends a connection or UDP session with no traffic either
	// way for this long. Default 1h (tcp), 30s (udp).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// KeepAlive turns TCP keepalive probes on (client and upstream
	// sockets) after this much idle time. Default 0: off, as in HAProxy
	// and nginx; idle_timeout ends idle connections.
	KeepAlive time.Duration `yaml:"keepalive"`
}

// L4SNIRoute sends TLS connections for Names to Upstream.
type L4SNIRoute struct {
	// Names are server names, exact or "*.example.com" (one label).
	Names    []string `yaml:"names"`
	Upstream string   `yaml:"upstream"`
}

func (c *Config) validateL4() []error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, c.Errorf(path, format, args...)) }
	known := func(path, name string) {
		if _, ok := c.Upstreams[name]; !ok {
			add(path, "unknown upstream %q: %s", name, c.upstreamChoices())
		}
	}
	seen := map[string]string{}
	for i := range c.L4 {
		l := &c.L4[i]
		p := fmt.Sprintf("l4[%d]", i)
		if l.Name == "" {
			l.Name = fmt.Sprintf("l4_%d", i)
		}
		if l.Protocol == "" {
			l.Protocol = "tcp"
		}
		if l.Listen == "" {
			add(p+".listen", "missing: expected host:port")
		} else if err := checkListenAddr(l.Listen); err != nil {
			add(p+".listen", "%v", err)
		} else {
			key := l.Protocol + " " + l.Listen
			if other, dup := seen[key]; dup {
				add(p+".listen", "%s %s is also %s's address", l.Protocol, l.Listen, other)
			}
			seen[key] = p
			if l.Protocol == "tcp" && (sameListener(l.Listen, c.Listen) || (c.Admin != "" && sameListener(l.Listen, c.Admin))) {
				add(p+".listen", "%q is the address of listen or admin: expected a port of its own", l.Listen)
			}
		}
		switch l.Protocol {
		case "tcp", "udp":
		default:
			add(p+".protocol", "unknown protocol %q: expected tcp or udp", l.Protocol)
		}
		if l.Upstream != "" {
			known(p+".upstream", l.Upstream)
		} else if len(l.SNI) == 0 {
			add(p+".upstream", "missing: expected the name of an upstream (or sni routes)")
		}
		if l.Protocol == "udp" && (l.TLS != nil || len(l.SNI) > 0) {
			add(p, "tls and sni are for tcp listeners")
		}
		if l.TLS != nil {
			if len(l.SNI) > 0 {
				add(p+".sni", "sni passes TLS through; it cannot be combined with tls termination on one listener")
			}
			if l.TLS.Cert == "" || l.TLS.Key == "" {
				add(p+".tls", "both cert and key are required")
			}
		}
		for j, r := range l.SNI {
			rp := fmt.Sprintf("%s.sni[%d]", p, j)
			if len(r.Names) == 0 {
				add(rp+".names", "missing: expected server names such as api.example.com or *.example.com")
			}
			for k, n := range r.Names {
				if n == "" || strings.ContainsAny(n, " /:") || (strings.Contains(n, "*") && (!strings.HasPrefix(n, "*.") || strings.Count(n, "*") > 1)) {
					add(fmt.Sprintf("%s.names[%d]", rp, k), "%q: expected a host name, or *.domain for one label", n)
				} else if strings.HasSuffix(n, ".") || strings.HasPrefix(n, ".") || strings.Contains(n, "..") {
					// TLS clients send the name without the root's dot
					// (RFC 6066; crypto/tls rejects a hello with one), so
					// "api.example.com." would never match.
					add(fmt.Sprintf("%s.names[%d]", rp, k), "%q: expected a host name without a trailing dot or empty labels (TLS clients send api.example.com, never api.example.com.)", n)
				}
			}
			if r.Upstream == "" {
				add(rp+".upstream", "missing: expected the name of an upstream")
			} else {
				known(rp+".upstream", r.Upstream)
			}
		}
		switch l.ProxyProtocol {
		case "", "v2":
		case "v1":
			if l.Protocol == "udp" {
				add(p+".proxy_protocol", "v1 carries TCP only: expected v2 for udp")
			}
		default:
			add(p+".proxy_protocol", "unknown version %q: expected v1 or v2", l.ProxyProtocol)
		}
		if l.MaxConnections < 0 {
			add(p+".max_connections", "negative value %d", l.MaxConnections)
		}
		if l.MaxConnectionsPerClient < 0 {
			add(p+".max_connections_per_client", "negative value %d", l.MaxConnectionsPerClient)
		}
		if l.ConnectTimeout < 0 {
			add(p+".connect_timeout", "negative duration %v", l.ConnectTimeout)
		}
		if l.IdleTimeout < 0 {
			add(p+".idle_timeout", "negative duration %v", l.IdleTimeout)
		}
		if l.KeepAlive < 0 {
			add(p+".keepalive", "negative duration %v", l.KeepAlive)
		} else if l.KeepAlive > 0 && l.Protocol == "udp" {
			add(p+".keepalive", "TCP keepalive on a udp listener")
		}
	}
	return errs
}

// l4Backend is the L4 view of an upstream pool of rt: its policy and
// outlier detector, read from the pool's current target generation on
// every connection, so a discovered upstream's joins and leaves apply to
// L4 listeners as they do to routes.
func (rt *runtime) l4Backend(name string) *l4.Backend {
	p := rt.pools[name]
	if p == nil {
		return nil
	}
	return &l4.Backend{Name: name, Policy: poolPolicy{p}, Outlier: poolOutlier{p}}
}

type poolPolicy struct{ p *proxy.Pool }

func (pp poolPolicy) Pick(r *http.Request, tried upstream.Tried) *upstream.Target {
	return pp.p.Policy().Pick(r, tried)
}

type poolOutlier struct{ p *proxy.Pool }

func (po poolOutlier) Observe(t *upstream.Target, failed bool, now time.Time) bool {
	if o := po.p.Outlier(); o != nil {
		return o.Observe(t, failed, now)
	}
	return false
}

func (rt *runtime) l4Routes(l L4Listener) (*l4.Backend, []l4.SNIRoute) {
	var routes []l4.SNIRoute
	for _, r := range l.SNI {
		routes = append(routes, l4.SNIRoute{Names: r.Names, Backend: rt.l4Backend(r.Upstream)})
	}
	var def *l4.Backend
	if l.Upstream != "" {
		def = rt.l4Backend(l.Upstream)
	}
	return def, routes
}

// l4Server is one running L4 listener.
type l4Server struct {
	cfg   L4Listener
	tcp   *l4.TCPServer
	udp   *l4.UDPServer
	ln    net.Listener
	pc    *net.UDPConn
	stats func() l4.Stats
}

// startL4 binds and serves every l4 listener of rt's config.
func (g *Gateway) startL4(rt *runtime) ([]*l4Server, error) {
	var out []*l4Server
	fail := func(err error) ([]*l4Server, error) {
		stopL4(out)
		return nil, err
	}
	for i, l := range rt.cfg.L4 {
		p := fmt.Sprintf("l4[%d]", i)
		s := &l4Server{cfg: l}
		log := g.log.With("component", "l4")
		def, routes := rt.l4Routes(l)
		if l.Protocol == "udp" {
			srv, err := l4.NewUDP(l4.UDPConfig{Name: l.Name, Backend: def, ProxyProtocol: l.ProxyProtocol, IdleTimeout: l.IdleTimeout,
				MaxSessions: l.MaxConnections, MaxSessionsPerClient: l.MaxConnectionsPerClient, Log: log})
			if err != nil {
				return fail(rt.cfg.Wrap(p, err))
			}
			addr, err := net.ResolveUDPAddr("udp", l.Listen)
			if err == nil {
				s.pc, err = net.ListenUDP("udp", addr)
			}
			if err != nil {
				return fail(rt.cfg.Errorf(p+".listen", "listening: %v", err))
			}
			s.udp, s.stats = srv, srv.Stats
			go srv.Serve(s.pc)
		} else {
			var tcfg *tls.Config
			if l.TLS != nil {
				cert, err := tls.LoadX509KeyPair(l.TLS.Cert, l.TLS.Key)
				if err != nil {
					return fail(rt.cfg.Errorf(p+".tls", "loading certificate: %v", err))
				}
				tcfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			srv, err := l4.NewTCP(l4.TCPConfig{Name: l.Name, Backend: def, SNIRoutes: routes, TLS: tcfg, ProxyProtocol: l.ProxyProtocol,
				MaxConnections: l.MaxConnections, MaxConnectionsPerClient: l.MaxConnectionsPerClient,
				ConnectTimeout: l.ConnectTimeout, IdleTimeout: l.IdleTimeout, KeepAlive: l.KeepAlive, Log: log})
			if err != nil {
				return fail(rt.cfg.Wrap(p, err))
			}
			if s.ln, err = l4.ListenConfig(l.KeepAlive).Listen(context.Background(), "tcp", l.Listen); err != nil {
				return fail(rt.cfg.Errorf(p+".listen", "listening: %v", err))
			}
			s.tcp, s.stats = srv, srv.Stats
			go srv.Serve(s.ln)
		}
		out = append(out, s)
		g.log.Info("l4 listening", "name", l.Name, "protocol", l.Protocol, "addr", s.addr().String())
	}
	return out, nil
}

func (s *l4Server) addr() net.Addr {
	if s.pc != nil {
		return s.pc.LocalAddr()
	}
	return s.ln.Addr()
}

// updateL4 points the running listeners at a new runtime's pools.
func updateL4(servers []*l4Server, rt *runtime) error {
	var errs []error
	for i, s := range servers {
		def, routes := rt.l4Routes(rt.cfg.L4[i])
		var err error
		if s.udp != nil {
			err = s.udp.Update(def)
		} else {
			err = s.tcp.Update(def, routes)
		}
		if err != nil {
			errs = append(errs, rt.cfg.Wrap(fmt.Sprintf("l4[%d]", i), err))
		}
	}
	return errors.Join(errs...)
}

// shutdownL4 stops accepting and lets connections end until ctx ends.
func shutdownL4(ctx context.Context, servers []*l4Server) {
	for _, s := range servers {
		if s.tcp != nil {
			s.tcp.Shutdown(ctx)
		}
	}
	stopL4(servers)
}

func stopL4(servers []*l4Server) {
	for _, s := range servers {
		if s.tcp != nil {
			s.tcp.Close()
		}
		if s.udp != nil {
			s.udp.Close()
			s.pc.Close()
		}
	}
}

// l4RestartOnly reports l4 changes a reload cannot apply: listeners added,
// removed or changed other than in their upstreams.
func l4RestartOnly(old, cfg *Config) error {
	if len(old.L4) != len(cfg.L4) {
		return cfg.Errorf("l4", "%d listeners, was %d: adding or removing l4 listeners needs a restart", len(cfg.L4), len(old.L4))
	}
	var errs []error
	for i := range cfg.L4 {
		a, b := old.L4[i], cfg.L4[i]
		for _, c := range []struct {
			key      string
			was, now any
		}{
			{"listen", a.Listen, b.Listen},
			{"protocol", a.Protocol, b.Protocol},
			{"tls", a.TLS != nil, b.TLS != nil},
			{"tls.cert", tlsField(a.TLS, true), tlsField(b.TLS, true)},
			{"tls.key", tlsField(a.TLS, false), tlsField(b.TLS, false)},
			{"sni", len(a.SNI) > 0, len(b.SNI) > 0},
			{"proxy_protocol", a.ProxyProtocol, b.ProxyProtocol},
			{"max_connections", a.MaxConnections, b.MaxConnections},
			{"max_connections_per_client", a.MaxConnectionsPerClient, b.MaxConnectionsPerClient},
			{"connect_timeout", a.ConnectTimeout, b.ConnectTimeout},
			{"idle_timeout", a.IdleTimeout, b.IdleTimeout},
			{"keepalive", a.KeepAlive, b.KeepAlive},
		} {
			if c.was == c.now {
				continue
			}
			what := fmt.Sprintf("changed from %v to %v", l4Shown(c.was), l4Shown(c.now))
			if c.key == "tls" || c.key == "sni" {
				what = map[bool]string{true: "turned on", false: "turned off"}[c.now.(bool)]
			}
			errs = append(errs, cfg.Errorf(fmt.Sprintf("l4[%d].%s", i, c.key),
				"%s: needs a restart (a reload changes only an l4 listener's upstream and its sni routes' upstreams)", what))
		}
	}
	return errors.Join(errs...)
}

// tlsField is a listener's certificate (cert) or key path, "" without
// tls: a new path needs a restart, as does a certificate rewritten in
// place (it is read once, at start).
func tlsField(t *TLS, cert bool) string {
	switch {
	case t == nil:
		return ""
	case cert:
		return t.Cert
	}
	return t.Key
}

// l4Shown prints a setting in an l4 reload error: strings quoted (so an
// empty one shows), durations and numbers as they are.
func l4Shown(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

// l4Collector exports the L4 listeners' counters.
type l4Collector struct{ g *Gateway }

var (
	l4Active   = prometheus.NewDesc("switchyard_l4_connections_active", "Open L4 connections (udp: sessions).", []string{"listener"}, nil)
	l4Accepted = prometheus.NewDesc("switchyard_l4_connections_total", "L4 connections (udp: sessions) accepted.", []string{"listener"}, nil)
	l4Rejected = prometheus.NewDesc("switchyard_l4_connections_rejected_total", "L4 connections refused by a connection limit.", []string{"listener"}, nil)
	l4Failed   = prometheus.NewDesc("switchyard_l4_connect_failures_total", "Failed connects to L4 targets.", []string{"listener"}, nil)
	l4Bytes    = prometheus.NewDesc("switchyard_l4_bytes_total", "Bytes forwarded by L4 listeners.", []string{"listener", "direction"}, nil)
)

func (c l4Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{l4Active, l4Accepted, l4Rejected, l4Failed, l4Bytes} {
		ch <- d
	}
}

func (c l4Collector) Collect(ch chan<- prometheus.Metric) {
	c.g.mu.Lock()
	servers := c.g.l4
	c.g.mu.Unlock()
	for _, s := range servers {
		st, n := s.stats(), s.cfg.Name
		ch <- prometheus.MustNewConstMetric(l4Active, prometheus.GaugeValue, float64(st.Active), n)
		ch <- prometheus.MustNewConstMetric(l4Accepted, prometheus.CounterValue, float64(st.Accepted), n)
		ch <- prometheus.MustNewConstMetric(l4Rejected, prometheus.CounterValue, float64(st.Rejected), n)
		ch <- prometheus.MustNewConstMetric(l4Failed, prometheus.CounterValue, float64(st.ConnectFailures), n)
		ch <- prometheus.MustNewConstMetric(l4Bytes, prometheus.CounterValue, float64(st.BytesIn), n, "in")
		ch <- prometheus.MustNewConstMetric(l4Bytes, prometheus.CounterValue, float64(st.BytesOut), n, "out")
	}
}

// L4Addrs returns the l4 listeners' addresses once Run is listening, in
// config order.
func (g *Gateway) L4Addrs() []net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []net.Addr
	for _, s := range g.l4 {
		out = append(out, s.addr())
	}
	return out
}
