// Package discovery is how services find each other through a switchyard
// registry: a service registers its instances and renews them with
// heartbeats (Register), callers follow a service's live instance set
// (Watch) and pick among healthy instances with the gateway's balancing
// policies (Balancer, Transport).
//
// The registry itself is package discovery/registry (`switchyard
// registry`); this package holds the instance type, its validation and
// the HTTP/JSON shapes both sides share.
package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/config"
)

// Limits on what an instance may carry; the registry refuses more.
const (
	MaxNameLen      = 63   // service name
	MaxIDLen        = 128  // instance id
	MaxTags         = 32   // tags per instance
	MaxTagLen       = 64   // bytes per tag
	MaxMeta         = 64   // metadata keys per instance
	MaxMetaKeyLen   = 128  // bytes per metadata key
	MaxMetaValueLen = 1024 // bytes per metadata value
	MaxURLLen       = 2048 // health URL
	MaxBody         = 64 << 10
)

// TTL bounds and default.
const (
	MinTTL     = 100 * time.Millisecond
	MaxTTL     = time.Hour
	DefaultTTL = 10 * time.Second
)

// State is an instance's lifecycle state in the registry.
type State string

// Instance states.
const (
	// StateUp instances receive traffic.
	StateUp State = "up"
	// StateDraining instances are still registered (and heartbeating) but
	// get no new requests: the step before a graceful shutdown.
	StateDraining State = "draining"
)

// Registration is what a service sends to register one instance.
type Registration struct {
	// Service is the service name: 1-63 of [a-z0-9._-], starting with a
	// letter or digit.
	Service string `json:"service"`
	// ID identifies the instance within its service: 1-128 of
	// [A-Za-z0-9._:-]. Registering the same id again replaces it.
	ID string `json:"id"`
	// Address is host:port where the instance serves.
	Address string `json:"address"`
	// Tags are free labels (version, zone); at most 32, each 1-64
	// printable bytes without spaces.
	Tags []string `json:"tags,omitempty"`
	// Meta is free key/value metadata; at most 64 keys.
	Meta map[string]string `json:"meta,omitempty"`
	// HealthURL, if set, is an http(s) URL where the instance answers
	// health checks. Only its path and query are used (HealthPath): a
	// gateway's active HTTP check of the instance always goes to
	// Address, whatever host the URL names, so a registration cannot
	// point the gateway's checks at another host.
	HealthURL string `json:"health_url,omitempty"`
	// TTL is how long the registration lives without a heartbeat; 100ms
	// to 1h. Default 10s.
	TTL config.Duration `json:"ttl,omitempty"`
}

// Instance is a registered instance as the registry reports it.
type Instance struct {
	Registration
	// State is "up" or "draining".
	State State `json:"state"`
	// Expires is when the instance is removed unless it heartbeats.
	Expires time.Time `json:"expires"`
	// Lease is set only in the answer to a registration: the secret its
	// heartbeats, state changes, deregistration and re-registrations
	// present (header X-Switchyard-Lease) while the instance lives, so
	// that another holder of the service's registry token cannot
	// replace, renew, drain or remove it. Listings never carry it.
	Lease string `json:"lease,omitempty"`
}

// ServiceSnapshot is the answer to a service query: its instances, sorted
// by id, and the registry index of the service's last change (pass it
// back to wait for the next one).
type ServiceSnapshot struct {
	// Service is the service name.
	Service string `json:"service"`
	// Index is the registry index of the service's last change; 0 for a
	// service without instances.
	Index uint64 `json:"index"`
	// Instances are the registered instances, sorted by id.
	Instances []Instance `json:"instances"`
}

// StateRequest is the body of a state change (drain, undrain).
type StateRequest struct {
	// State is the new state: "up" or "draining".
	State State `json:"state"`
}

// ValidName reports a problem with a service name, or nil.
func ValidName(s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("service name %q: expected 1-%d characters", clip(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("service name %q: expected lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", clip(s))
		}
	}
	return nil
}

// ValidID reports a problem with an instance id, or nil.
func ValidID(s string) error {
	if s == "" || len(s) > MaxIDLen {
		return fmt.Errorf("instance id %q: expected 1-%d characters", clip(s), MaxIDLen)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("instance id %q: expected more than dots (a path segment the HTTP API cannot address)", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:-", c) >= 0) {
			return fmt.Errorf("instance id %q: expected letters, digits, '.', '_', ':' or '-'", clip(s))
		}
	}
	return nil
}

// ValidAddress reports a problem with a host:port address, or nil.
func ValidAddress(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || len(s) > 300 {
		return fmt.Errorf("address %q: expected host:port", clip(s))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("address %q: port %q: expected 1-65535", clip(s), clip(port))
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:%_", c) >= 0) {
			return fmt.Errorf("address %q: host %q: expected a host name or IP address", clip(s), clip(host))
		}
	}
	// A "host name" made of numbers is an IP address to the C resolver
	// (inet_aton: 2852039166, 0xa9fea9fe, 0251.0376.0251.0376 and
	// 169.254.43518 are all 169.254.169.254): only the dotted quad is
	// taken, so the checks below see the address every resolver sees.
	if _, err := netip.ParseAddr(host); err != nil && numericHost(host) {
		return fmt.Errorf("address %q: host %q: a number that resolvers read as an IP address: expected a dotted-quad IPv4 address (no leading zeros), an IPv6 address or a host name", clip(s), clip(host))
	}
	// IPs no instance has: link-local (169.254.169.254 is the cloud
	// metadata service, a classic target of forged registrations), the
	// unspecified address (dials this very host) and multicast.
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip = ip.Unmap(); ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("address %q: %s is a link-local, unspecified or multicast address: expected an instance's unicast address", clip(s), ip)
		}
	}
	return nil
}

// numericHost reports whether host reads as an IPv4 address in
// inet_aton's notations: one to four dot-separated parts, each decimal,
// octal (leading 0) or hexadecimal (0x), optionally with a trailing dot.
func numericHost(host string) bool {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		digits, hex := p, false
		if len(p) >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') {
			digits, hex = p[2:], true
		}
		if digits == "" && !hex {
			return false
		}
		for i := 0; i < len(digits); i++ {
			c := digits[i]
			if !(c >= '0' && c <= '9' || hex && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')) {
				return false
			}
		}
	}
	return true
}

// Validate reports every problem of r (after defaults) joined.
func (r Registration) Validate() error {
	var errs []error
	if err := ValidName(r.Service); err != nil {
		errs = append(errs, err)
	}
	if err := ValidID(r.ID); err != nil {
		errs = append(errs, err)
	}
	if err := ValidAddress(r.Address); err != nil {
		errs = append(errs, err)
	}
	if len(r.Tags) > MaxTags {
		errs = append(errs, fmt.Errorf("tags: %d tags: expected at most %d", len(r.Tags), MaxTags))
	}
	for i, t := range r.Tags {
		if t == "" || len(t) > MaxTagLen || !printable(t) || strings.ContainsRune(t, ' ') {
			errs = append(errs, fmt.Errorf("tags[%d] %q: expected 1-%d printable characters without spaces", i, clip(t), MaxTagLen))
		}
	}
	if len(r.Meta) > MaxMeta {
		errs = append(errs, fmt.Errorf("meta: %d keys: expected at most %d", len(r.Meta), MaxMeta))
	}
	for k, v := range r.Meta {
		if k == "" || len(k) > MaxMetaKeyLen || !printable(k) {
			errs = append(errs, fmt.Errorf("meta key %q: expected 1-%d printable characters", clip(k), MaxMetaKeyLen))
		}
		if len(v) > MaxMetaValueLen || !printable(v) {
			errs = append(errs, fmt.Errorf("meta[%q]: expected at most %d printable characters", clip(k), MaxMetaValueLen))
		}
	}
	if r.HealthURL != "" {
		u, err := url.Parse(r.HealthURL)
		if len(r.HealthURL) > MaxURLLen || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("health_url %q: expected an http or https URL of at most %d bytes", clip(r.HealthURL), MaxURLLen))
		}
	}
	if ttl := r.TTL.Std(); ttl != 0 && (ttl < MinTTL || ttl > MaxTTL) {
		errs = append(errs, fmt.Errorf("ttl %v: expected %v to %v", ttl, MinTTL, MaxTTL))
	}
	return errors.Join(errs...)
}

// HealthPath returns the path and query of r.HealthURL ("/" for a URL
// without a path), the request URI a health check sends to r.Address;
// "" without a (valid) health URL. The URL's scheme, host and fragment
// are not part of it.
func (r Registration) HealthPath() string {
	if r.HealthURL == "" {
		return ""
	}
	u, err := url.Parse(r.HealthURL)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return ""
	}
	p := u.RequestURI()
	if !strings.HasPrefix(p, "/") {
		return ""
	}
	return p
}

// WithDefaults returns r with a zero TTL set to DefaultTTL.
func (r Registration) WithDefaults() Registration {
	if r.TTL == 0 {
		r.TTL = config.Duration(DefaultTTL)
	}
	return r
}

func printable(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == 0xfffd {
			return false
		}
	}
	return true
}

// clip shortens hostile input quoted in an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
