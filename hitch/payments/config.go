package payments

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/switchyard/switchyard/breaker"
)

// Config configures the payments service. Zero fields take the defaults
// written beside them.
type Config struct {
	// ProcessorURL is the card processor's base URL. Default
	// "http://cardprocessor" (resolved through discovery by the runtime's
	// HTTPClient).
	ProcessorURL string `yaml:"processor_url"`
	// Currency of every charge and payout. Default "usd".
	Currency string `yaml:"currency"`
	// Processor tunes the calls to the card processor.
	Processor Calls `yaml:"processor"`
	// Saga tunes the payment sagas.
	Saga SagaConfig `yaml:"saga"`
	// RelayLeaseTTL is the outbox relay's partition lease (the takeover
	// delay after a replica dies). Default 10s.
	RelayLeaseTTL time.Duration `yaml:"relay_lease_ttl"`
	// RelayPollInterval is how often the relay looks for events without a
	// wake-up. Default 1s.
	RelayPollInterval time.Duration `yaml:"relay_poll_interval"`
	// Consumers is how many ride.finished events are handled at once.
	// Default 8.
	Consumers int `yaml:"consumers"`
	// Prefetch is how many events the consumer holds ahead, unacked. Kept
	// small: a replica that crashes returns its prefetched events to the
	// queue with one more delivery counted, and a queue dead-letters an
	// event after max_deliveries (default 5). Default 2 * Consumers.
	Prefetch int `yaml:"prefetch"`

	// HTTPClient's Transport carries the calls to the processor, under the
	// resilience layers (its Timeout is not used: Processor.Timeout
	// bounds a call). Default http.DefaultTransport.
	HTTPClient *http.Client `yaml:"-"`
	// Logger receives what goes wrong in the background. Default: discard.
	Logger *slog.Logger `yaml:"-"`
}

// Calls tunes the resilient client of the card processor (kit/resilient).
type Calls struct {
	// Timeout bounds one call including its retries. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// AttemptTimeout bounds each attempt; a slower processor is given up
	// on and asked again with the same idempotency key. Default 2s.
	AttemptTimeout time.Duration `yaml:"attempt_timeout"`
	// Attempts is the tries per call, the first included, on 5xx,
	// timeouts, resets and refused connections (every call carries an
	// Idempotency-Key, so every retry is safe). 1 to 10. Default 3.
	Attempts int `yaml:"attempts"`
	// RetryBase is the backoff before the first retry (exponential, full
	// jitter, capped at 10 times it). Default 50ms.
	RetryBase time.Duration `yaml:"retry_base"`
	// RetryBudget is the share of calls retries may add (0 to 1). Default 0.2.
	RetryBudget float64 `yaml:"retry_budget"`
	// Breaker opens on the processor after a failure ratio in a window
	// (breaker.Config; its defaults: 50% of at least 20 calls in 10s,
	// open 10s, 3 probes).
	Breaker breaker.Config `yaml:"breaker"`
}

// SagaConfig tunes the orchestrator of the payment sagas (kit/saga).
type SagaConfig struct {
	// Concurrency is how many sagas one replica drives at once. Default 16.
	Concurrency int `yaml:"concurrency"`
	// ClaimTTL is how long a dead replica's sagas wait before another
	// takes them over. Default 30s.
	ClaimTTL time.Duration `yaml:"claim_ttl"`
	// PollInterval is the longest wait between looks for due sagas.
	// Default 1s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// RetryBase and RetryCap bound the backoff between attempts of a step
	// that failed for a transient reason (the processor down, the breaker
	// open): such a step is tried again until it succeeds or the processor
	// answers for good. Defaults 200ms and 30s.
	RetryBase time.Duration `yaml:"retry_base"`
	RetryCap  time.Duration `yaml:"retry_cap"`
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.ProcessorURL == "" {
		c.ProcessorURL = "http://cardprocessor"
	}
	if c.Currency == "" {
		c.Currency = "usd"
	}
	def(&c.Processor.Timeout, 10*time.Second)
	def(&c.Processor.AttemptTimeout, 2*time.Second)
	if c.Processor.Attempts == 0 {
		c.Processor.Attempts = 3
	}
	def(&c.Processor.RetryBase, 50*time.Millisecond)
	if c.Processor.RetryBudget == 0 {
		c.Processor.RetryBudget = 0.2
	}
	c.Processor.Breaker = c.Processor.Breaker.WithDefaults()
	if c.Saga.Concurrency == 0 {
		c.Saga.Concurrency = 16
	}
	def(&c.Saga.ClaimTTL, 30*time.Second)
	def(&c.Saga.PollInterval, time.Second)
	def(&c.Saga.RetryBase, 200*time.Millisecond)
	def(&c.Saga.RetryCap, 30*time.Second)
	def(&c.RelayLeaseTTL, 10*time.Second)
	def(&c.RelayPollInterval, time.Second)
	if c.Consumers == 0 {
		c.Consumers = 8
	}
	if c.Prefetch == 0 {
		c.Prefetch = 2 * c.Consumers
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem of c (after defaults) at once, naming keys.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.ProcessorURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("processor_url %q: want an http or https URL with a host", c.ProcessorURL))
	}
	if len(c.Currency) != 3 {
		errs = append(errs, fmt.Errorf("currency %q: want a three-letter code such as usd", c.Currency))
	}
	pos := func(key string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v: want a positive duration", key, d))
		}
	}
	pos("processor.timeout", c.Processor.Timeout)
	pos("processor.attempt_timeout", c.Processor.AttemptTimeout)
	pos("processor.retry_base", c.Processor.RetryBase)
	pos("saga.claim_ttl", c.Saga.ClaimTTL)
	pos("saga.poll_interval", c.Saga.PollInterval)
	pos("saga.retry_base", c.Saga.RetryBase)
	pos("relay_lease_ttl", c.RelayLeaseTTL)
	pos("relay_poll_interval", c.RelayPollInterval)
	if c.Processor.AttemptTimeout > c.Processor.Timeout {
		errs = append(errs, fmt.Errorf("processor.attempt_timeout %v: want at most processor.timeout (%v)", c.Processor.AttemptTimeout, c.Processor.Timeout))
	}
	if c.Processor.Attempts < 1 || c.Processor.Attempts > 10 {
		errs = append(errs, fmt.Errorf("processor.attempts %d: want 1 to 10", c.Processor.Attempts))
	}
	if c.Processor.RetryBudget <= 0 || c.Processor.RetryBudget > 1 {
		errs = append(errs, fmt.Errorf("processor.retry_budget %v: want more than 0, at most 1", c.Processor.RetryBudget))
	}
	if err := c.Processor.Breaker.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("processor.breaker: %w", err))
	}
	if c.Saga.RetryCap < c.Saga.RetryBase {
		errs = append(errs, fmt.Errorf("saga.retry_cap %v: want at least saga.retry_base (%v)", c.Saga.RetryCap, c.Saga.RetryBase))
	}
	if c.Saga.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("saga.concurrency %d: want at least 1", c.Saga.Concurrency))
	}
	if c.Prefetch < 1 {
		errs = append(errs, fmt.Errorf("prefetch %d: want at least 1", c.Prefetch))
	}
	if c.Consumers < 1 {
		errs = append(errs, fmt.Errorf("consumers %d: want at least 1", c.Consumers))
	}
	return errors.Join(errs...)
}
