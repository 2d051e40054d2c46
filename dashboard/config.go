package dashboard

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/switchyard/switchyard/config"
)

// Defaults and bounds of Config.
const (
	DefaultMaxStreams = 16
	MaxMaxStreams     = 1024
	MaxBrokers        = 16
)

// Config is the gateway config's `dashboard:` block. The zero value (or no
// block) serves the dashboard on the admin listener with the defaults.
type Config struct {
	// Disabled turns the dashboard off: its paths answer 404. Default
	// false (served whenever the admin listener is).
	Disabled bool `yaml:"disabled"`
	// Brokers are base URLs of switchyard brokers' HTTP APIs
	// (http://127.0.0.1:7401) whose queues and streams the dashboard shows
	// with their depth and consumer lag; at most 16. Default: the
	// gateway's broker.url when it has one, else none (no queue panel).
	// The dashboard only reads (GET /v1/queues, /v1/streams and each one's
	// info) once a second while a page is open.
	Brokers []string `yaml:"brokers"`
	// MaxStreams bounds the live event streams (open dashboard pages)
	// served at once; one more is answered 503 until another closes.
	// Default 16, at most 1024.
	MaxStreams int `yaml:"max_streams"`
}

// Validate reports every problem of c, each a *config.FieldError relative
// to the dashboard block. It does not modify c.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) > MaxBrokers {
		errs = append(errs, config.Fieldf("brokers", "%d URLs: expected at most %d", len(c.Brokers), MaxBrokers))
	}
	for i, s := range c.Brokers {
		if err := checkBrokerURL(s); err != nil {
			errs = append(errs, &config.FieldError{Path: fmt.Sprintf("brokers[%d]", i), Err: err})
		}
	}
	if c.MaxStreams < 0 || c.MaxStreams > MaxMaxStreams {
		errs = append(errs, config.Fieldf("max_streams", "%d out of range: expected 1 to %d (or omit it for %d)", c.MaxStreams, MaxMaxStreams, DefaultMaxStreams))
	}
	return errors.Join(errs...)
}

// checkBrokerURL accepts an http(s) base URL without query, fragment or
// credentials (publish checks its broker.url alike; it sits above this
// package, so the few lines are repeated rather than imported).
func checkBrokerURL(s string) error {
	if s == "" {
		return errors.New("empty: expected a broker's HTTP API base URL, e.g. http://127.0.0.1:7401")
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("invalid URL %q: %v", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("invalid URL %q: expected an http:// or https:// URL", s)
	case u.Host == "":
		return fmt.Errorf("invalid URL %q: no host", s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("invalid URL %q: expected a base URL without credentials, query or fragment", s)
	}
	return nil
}
