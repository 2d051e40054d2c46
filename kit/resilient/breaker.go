package resilient

import (
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/switchyard/switchyard/breaker"
)

// BreakerConfig configures a Breakers layer.
type BreakerConfig struct {
	// Breaker configures each dependency's breaker (zero fields take
	// breaker's defaults).
	Breaker breaker.Config
	// Options are passed to every breaker (clock, state-change hook).
	Options breaker.Options
	// Key names the dependency of a request. Default HostKey.
	Key KeyFunc
}

// Breakers is a layer keeping a circuit breaker per dependency (per host by
// default). An attempt fails for the breaker when it returns an error or a
// status of 500 or more; a call the caller cancelled, or one an inner
// layer refused locally (ErrBulkheadFull, ErrThrottled), says nothing about
// the dependency and counts nothing. While a dependency's breaker is open its
// calls fail at once with an error matching ErrCircuitOpen (and
// errors.As-able to *breaker.OpenError). Create it with NewBreakers; safe
// for concurrent use.
type Breakers struct {
	cfg  BreakerConfig
	mu   sync.Mutex
	byID map[string]*breaker.Breaker
}

// NewBreakers validates cfg and returns the layer.
func NewBreakers(cfg BreakerConfig) (*Breakers, error) {
	cfg.Breaker = cfg.Breaker.WithDefaults()
	if err := cfg.Breaker.Validate(); err != nil {
		return nil, err
	}
	if cfg.Key == nil {
		cfg.Key = HostKey
	}
	return &Breakers{cfg: cfg, byID: make(map[string]*breaker.Breaker)}, nil
}

// For returns the breaker of the dependency named key, creating it closed.
func (b *Breakers) For(key string) *breaker.Breaker {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.byID[key]
	if br == nil {
		br, _ = breaker.New(b.cfg.Breaker, b.cfg.Options) // validated in NewBreakers
		b.byID[key] = br
	}
	return br
}

// Wrap returns next behind the breakers.
func (b *Breakers) Wrap(next http.RoundTripper) http.RoundTripper {
	return RoundTripFunc(func(req *http.Request) (*http.Response, error) {
		key := b.cfg.Key(req)
		br := b.For(key)
		if err := br.Allow(); err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, fmt.Errorf("calling %s: %w", key, err)
		}
		resp, err := next.RoundTrip(req)
		switch {
		case err != nil && (req.Context().Err() != nil || errors.Is(err, ErrBulkheadFull) || errors.Is(err, ErrThrottled)):
			// The caller gave up, or an inner layer refused the call
			// locally: nothing was learnt about the dependency.
			br.Release()
		default:
			br.Record(err == nil && resp.StatusCode < 500)
		}
		return resp, err
	})
}
