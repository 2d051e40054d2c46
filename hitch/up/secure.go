package up

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/kit/discovery/registry"
	"github.com/switchyard/switchyard/tlsconf"
)

// Identities of the processes besides the services (certificate common
// names under DATA/pki).
const (
	// IDGateway is hitch up's own process: the gateway, the supervisor's
	// health checks, the JWKS and operator relays.
	IDGateway = "gateway"
	// IDRegistry is the registry's server certificate.
	IDRegistry = "registry"
	// IDBroker is the broker's server certificate.
	IDBroker = "broker"
	// IDOperator is for people and tools: hitch check, curl --cert. It may
	// call every service (the declined-payment case sets the card
	// processor's faults) and the admin API (operator role).
	IDOperator = "operator"
)

// BrokerGrant is what one service may do on the broker.
type BrokerGrant struct {
	Publish, Consume []string
}

// BrokerGrants is the broker permission table of --secure: each service
// may publish to its own topic and consume its own queues (and the live
// topics it follows), nothing else. Taken from the code: where each
// service publishes (its outbox's topic) and what it routes or subscribes.
var BrokerGrants = map[string]BrokerGrant{
	hitch.Location: {Publish: []string{"topic:" + hitch.TopicLocations}, Consume: []string{"topic:" + hitch.TopicLocations}},
	hitch.Matching: {Publish: []string{"topic:" + hitch.TopicMatching}, Consume: []string{"queue:" + hitch.QueueMatchingRides}},
	hitch.Rides: {Publish: []string{"topic:" + hitch.TopicRides},
		Consume: []string{"queue:" + hitch.QueueRidesMatching, "queue:" + hitch.QueueRidesPayments}},
	hitch.Payments: {Publish: []string{"topic:" + hitch.TopicPayments}, Consume: []string{"queue:" + hitch.QueuePaymentsRides}},
	hitch.Views:    {Consume: []string{"queue:" + hitch.QueueViewsRides, "queue:" + hitch.QueueViewsPayments}},
	hitch.Notifications: {Consume: []string{"topic:" + hitch.TopicRides, "topic:" + hitch.TopicMatching,
		"topic:" + hitch.TopicPayments}},
}

// Callers lists, per service, who besides the gateway and the operator
// may call it directly (mTLS, checked in the handshake).
var Callers = map[string][]string{
	hitch.CardProcessor: {hitch.Payments},
}

// secure is the PKI of a --secure run.
type secure struct {
	ca     *tlsconf.LocalCA
	names  []string                // every component with a leaf
	leaves map[string]tlsconf.Leaf // read-only after setupSecure (files renewed in place)
	// adminTokenFile holds the admin API's operator token (0600).
	adminTokenFile string
	// registryToken is hitch up's own (the token file is for tools).
	client *tls.Config // IDGateway's client config
}

// setupSecure opens (or creates) the CA in DATA/pki and issues (or
// reuses) a leaf per component, and the admin token.
func setupSecure(data string, services []string, leafValidity time.Duration) (*secure, error) {
	s := &secure{ca: &tlsconf.LocalCA{Dir: filepath.Join(data, "pki"), LeafValidity: leafValidity}, leaves: map[string]tlsconf.Leaf{}}
	if err := s.ca.Open(); err != nil {
		return nil, err
	}
	s.names = append([]string{IDGateway, IDRegistry, IDBroker, IDOperator}, services...)
	for _, n := range s.names {
		l, err := s.ca.Leaf(n)
		if err != nil {
			return nil, err
		}
		s.leaves[n] = l
	}
	s.adminTokenFile = filepath.Join(s.ca.Dir, "admin.token")
	if _, err := os.Stat(s.adminTokenFile); errors.Is(err, os.ErrNotExist) {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if err := os.WriteFile(s.adminTokenFile, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("writing the admin token: %w", err)
		}
	} else if err != nil {
		return nil, err
	} else if st, _ := os.Stat(s.adminTokenFile); st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others: chmod 600 it", s.adminTokenFile)
	}
	gw := s.leaves[IDGateway]
	c, err := tlsconf.ClientConfig(s.ca.CACert(), gw.Cert, gw.Key)
	if err != nil {
		return nil, err
	}
	s.client = c
	return s, nil
}

// renewEvery is how often renew looks at the leaves: a quarter of the
// renewal window (a 90-day leaf renewed 30 days before expiry: at most
// hourly), so a renewal happens well before expiry even if a check is
// late.
func (s *secure) renewEvery() time.Duration {
	return min(time.Hour, max(s.ca.RenewBefore/4, 10*time.Millisecond))
}

// renew re-issues every leaf that entered its renewal window (LocalCA:
// the last third of its lifetime), until ctx ends. The files are
// replaced in place; every server and client of a --secure run reads its
// certificate through tlsconf.FileCert (or the gateway's certificate
// watch), so the new leaf is used from the next handshake on with no
// restart. onRenew is told each renewed leaf.
func (s *secure) renew(ctx context.Context, onRenew func(tlsconf.Leaf), onErr func(name string, err error)) {
	t := time.NewTicker(s.renewEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, n := range s.names {
			l, err := s.ca.Leaf(n)
			if err != nil {
				onErr(n, err)
				continue
			}
			if l.Issued {
				onRenew(l)
			}
		}
	}
}

// httpClient is an HTTPS client presenting the gateway's certificate.
func (s *secure) httpClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy, t.TLSClientConfig = nil, s.client
	return &http.Client{Transport: t}
}

// registryServer is the registry's TLS config (client certificates
// verified when given) and its access: each service writes its own
// instances; the gateway reads.
func (s *secure) registryServer(services []string) (*tls.Config, registry.Access, error) {
	l := s.leaves[IDRegistry]
	cfg, err := tlsconf.ServerConfig(s.ca.CACert(), l.Cert, l.Key, nil)
	if err != nil {
		return nil, registry.Access{}, err
	}
	a := registry.Access{Certs: map[string][]string{IDGateway: nil, IDOperator: nil}}
	for _, n := range services {
		a.Certs[n] = []string{n}
	}
	return cfg, a, nil
}

// serveArgs are the TLS flags of `hitch serve NAME`.
func (s *secure) serveArgs(name string) []string {
	l := s.leaves[name]
	callers := append([]string{IDGateway, IDOperator}, Callers[name]...)
	return []string{"--tls-ca", s.ca.CACert(), "--tls-cert", l.Cert, "--tls-key", l.Key, "--tls-callers", strings.Join(callers, ",")}
}

// busURL is the broker URL service name uses: TLS, its certificate as
// its login.
func (s *secure) busURL(native, name string) string {
	l := s.leaves[name]
	q := url.Values{"ca": {s.ca.CACert()}, "cert": {l.Cert}, "key": {l.Key}, "server_name": {IDBroker}}
	return "switchyard://" + native + "?" + q.Encode()
}

// brokerYAML is the tls: and auth: blocks appended to the broker config:
// TLS on both listeners, client certificates from the CA, one user per
// service (its certificate) with BrokerGrants' permissions.
func (s *secure) brokerYAML(services []string) []byte {
	l := s.leaves[IDBroker]
	var b strings.Builder
	fmt.Fprintf(&b, "tls:\n  cert: %q\n  key: %q\n  client_ca: %q\nauth:\n  users:\n", l.Cert, l.Key, s.ca.CACert())
	// hitch up itself: the operator view's and the dashboard's queue
	// lists and counts, nothing more (read; /healthz needs no login).
	fmt.Fprintf(&b, "    %s:\n      certs: [%s]\n      read: [%s]\n", IDGateway, IDGateway, quoteList(GatewayBrokerRead()))
	sorted := append([]string(nil), services...)
	sort.Strings(sorted)
	for _, n := range sorted {
		g, ok := BrokerGrants[n]
		if !ok {
			continue // no bus: no broker user
		}
		fmt.Fprintf(&b, "    %s:\n      certs: [%s]\n", n, n)
		if len(g.Publish) > 0 {
			fmt.Fprintf(&b, "      publish: [%s]\n", quoteList(g.Publish))
		}
		if len(g.Consume) > 0 {
			fmt.Fprintf(&b, "      consume: [%s]\n", quoteList(g.Consume))
		}
	}
	return []byte(b.String())
}

// GatewayBrokerRead is what hitch up's own broker user may read: Hitch's
// queues (hitch.Bindings), for the dashboard and the operator view.
func GatewayBrokerRead() []string {
	var out []string
	for _, qs := range hitch.Bindings {
		for _, q := range qs {
			out = append(out, "queue:"+q)
		}
	}
	sort.Strings(out)
	return out
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

// gateway sets the gateway config's TLS: HTTPS on the listener, mTLS to
// every service upstream (server name = the service, so its identity is
// checked), the registry over HTTPS with the gateway's certificate, and
// the admin API over HTTPS with the operator token or the operator
// certificate.
func (s *secure) gateway(cfg *gateway.Config) {
	gw := s.leaves[IDGateway]
	// Watched at the renewal check's pace (files changed by renew).
	cfg.TLS = &tlsconf.Server{Cert: gw.Cert, Key: gw.Key, WatchInterval: min(tlsconf.DefaultWatchInterval, s.renewEvery())}
	for name, u := range cfg.Upstreams {
		if u.Discover == "" {
			continue
		}
		u.TLS = &tlsconf.Upstream{CA: s.ca.CACert(), Cert: gw.Cert, Key: gw.Key, ServerName: name}
		u.Protocol = "http1"
	}
	cfg.Discovery.TLS = &tlsconf.Upstream{CA: s.ca.CACert(), Cert: gw.Cert, Key: gw.Key, ServerName: IDRegistry}
	cfg.AdminTLS = &gateway.AdminTLS{Cert: gw.Cert, Key: gw.Key, ClientCA: s.ca.CACert()}
	cfg.AdminAuth = &admin.AuthConfig{
		Tokens:  []admin.Token{{Name: "hitch-operator", Token: "file:" + s.adminTokenFile, Role: "operator"}},
		Clients: []admin.Client{{Name: IDOperator, Role: "operator"}, {Name: IDGateway, Role: "read"}},
	}
}
