// Package retry decides whether and when a failed request attempt is tried
// again: the conditions that qualify (Policy), whether retrying is safe for
// the request (Safe), how long to wait (Backoff) and whether the route can
// afford more load (Budget).
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/config"
)

// Condition names accepted in Config.On.
const (
	// OnConnectFailure retries when no connection to the backend could be
	// made (ErrorKind ConnectFailure).
	OnConnectFailure = "connect_failure"
	// OnTimeout retries when the attempt timed out (ErrorKind Timeout).
	OnTimeout = "timeout"
	// OnReset retries when the connection was reset or closed before a
	// response arrived (ErrorKind Reset).
	OnReset = "reset"
	// On5xx retries on any status 500-599.
	On5xx = "5xx"
	// OnGatewayError retries on status 502, 503 and 504.
	OnGatewayError = "gateway_error"
)

// validConditions is for error messages.
const validConditions = "connect_failure, timeout, reset, 5xx, gateway_error or a status code 100-599"

// Defaults applied by Config.WithDefaults to zero fields.
const (
	DefaultAttempts            = 1
	DefaultBase                = 25 * time.Millisecond
	DefaultBudget              = 0.2
	DefaultMinRetriesPerSecond = 10
)

// MaxAttempts is the largest Config.Attempts accepted: more tries than this
// multiply the load on a failing backend for little gain.
const MaxAttempts = 10

// Config configures retries for a route. The zero value of every field means
// its default; the zero Config never retries.
type Config struct {
	// Attempts is the total number of tries including the first, 1 to
	// MaxAttempts. Default 1 (no retry).
	Attempts int `yaml:"attempts"`
	// Backoff is how the wait grows between retries: "fixed",
	// "incremental" or "exponential". Default "exponential".
	Backoff string `yaml:"backoff"`
	// Base is the wait before the first retry, before jitter. Positive.
	// Default 25ms.
	Base time.Duration `yaml:"base"`
	// Cap is the largest wait before jitter; at least Base. Default 10 *
	// Base.
	Cap time.Duration `yaml:"cap"`
	// Jitter randomises the wait: "none", "full" (uniform in [0, wait)) or
	// "equal" (wait/2 plus uniform in [0, wait/2)). Default "full".
	Jitter string `yaml:"jitter"`
	// On lists the conditions that make an attempt retriable:
	// "connect_failure", "timeout", "reset", "5xx", "gateway_error" (502,
	// 503, 504) or a status code such as "503". Default ["connect_failure"],
	// the one condition where the backend never saw the request.
	On []string `yaml:"on"`
	// Budget is the fraction of the route's original requests that retries
	// may add over the budget window (BudgetWindow), 0 < Budget <= 1.
	// Default 0.2 (at most 20% extra load).
	Budget config.Percent `yaml:"budget"`
	// MinRetriesPerSecond is a floor under the budget so that low-traffic
	// routes can still retry: the window always allows this many retries
	// per second of BudgetWindow. Default 10; -1 means no floor.
	MinRetriesPerSecond int `yaml:"min_retries_per_second"`
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Attempts == 0 {
		c.Attempts = DefaultAttempts
	}
	if c.Backoff == "" {
		c.Backoff = Exponential.String()
	}
	if c.Base == 0 {
		c.Base = DefaultBase
	}
	if c.Cap == 0 && c.Base > 0 && c.Base <= math.MaxInt64/10 {
		c.Cap = 10 * c.Base
	}
	if c.Jitter == "" {
		c.Jitter = FullJitter.String()
	}
	if len(c.On) == 0 {
		c.On = []string{OnConnectFailure}
	}
	if c.Budget == 0 {
		c.Budget = DefaultBudget
	}
	if c.MinRetriesPerSecond == 0 {
		c.MinRetriesPerSecond = DefaultMinRetriesPerSecond
	}
	return c
}

// Validate reports every problem of c (after defaults) at once, joined with
// errors.Join. It does not modify c.
func (c Config) Validate() error {
	_, err := compile(c.WithDefaults())
	return err
}

// Policy is the compiled form of a Config. Create it with NewPolicy. Its
// methods are safe for concurrent use and do not allocate.
type Policy struct {
	attempts int
	backoff  Backoff
	status   [600/64 + 1]uint64 // bit per status code to retry on
	errs     uint8              // bit per ErrorKind to retry on
	budget   *Budget
}

// NewPolicy applies defaults to cfg, validates it and compiles it. The
// policy owns a Budget built from cfg.Budget and cfg.MinRetriesPerSecond.
func NewPolicy(cfg Config) (*Policy, error) {
	return compile(cfg.WithDefaults())
}

// compile validates c (already defaulted) and builds its Policy; it returns
// a nil Policy and every problem joined when c is invalid.
func compile(c Config) (*Policy, error) {
	var errs []error
	p := &Policy{attempts: c.Attempts}
	if c.Attempts < 1 || c.Attempts > MaxAttempts {
		errs = append(errs, config.Fieldf("attempts", "%d: expected 1 to %d tries including the first", c.Attempts, MaxAttempts))
	}
	var err error
	if p.backoff.Kind, err = ParseKind(c.Backoff); err != nil {
		errs = append(errs, &config.FieldError{Path: "backoff", Err: err})
	}
	if p.backoff.Jitter, err = ParseJitter(c.Jitter); err != nil {
		errs = append(errs, &config.FieldError{Path: "jitter", Err: err})
	}
	p.backoff.Base, p.backoff.Cap = c.Base, c.Cap
	if c.Base <= 0 {
		errs = append(errs, config.Fieldf("base", "%v: expected a positive duration", c.Base))
	}
	if c.Cap < c.Base {
		errs = append(errs, config.Fieldf("cap", "%v: expected at least the base %v", c.Cap, c.Base))
	}
	for i, on := range c.On {
		if err := p.addCondition(on); err != nil {
			errs = append(errs, &config.FieldError{Path: fmt.Sprintf("on[%d]", i), Err: err})
		}
	}
	if !(c.Budget > 0 && c.Budget <= 1) { // also rejects NaN
		errs = append(errs, config.Fieldf("budget", "%v: expected a fraction 0 < budget <= 1", c.Budget))
	}
	if c.MinRetriesPerSecond < -1 {
		errs = append(errs, config.Fieldf("min_retries_per_second", "%d: expected -1 (no floor) or at least 0", c.MinRetriesPerSecond))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.budget = NewBudget(float64(c.Budget), max(c.MinRetriesPerSecond, 0))
	return p, nil
}

func (p *Policy) addCondition(on string) error {
	switch on {
	case OnConnectFailure:
		p.errs |= 1 << ConnectFailure
	case OnTimeout:
		p.errs |= 1 << Timeout
	case OnReset:
		p.errs |= 1 << Reset
	case On5xx:
		for code := 500; code <= 599; code++ {
			p.setStatus(code)
		}
	case OnGatewayError:
		p.setStatus(502)
		p.setStatus(503)
		p.setStatus(504)
	default:
		code, err := strconv.Atoi(strings.TrimSpace(on))
		if err != nil {
			return fmt.Errorf("retry condition %q: expected one of %s", on, validConditions)
		}
		if code < 100 || code > 599 {
			return fmt.Errorf("retry condition %q: expected a status code 100-599", on)
		}
		p.setStatus(code)
	}
	return nil
}

func (p *Policy) setStatus(code int) { p.status[code/64] |= 1 << (code % 64) }

// Attempts returns the total number of tries including the first.
func (p *Policy) Attempts() int { return p.attempts }

// Backoff returns the wait schedule between tries.
func (p *Policy) Backoff() Backoff { return p.backoff }

// Budget returns the route's retry budget, shared by all its requests.
func (p *Policy) Budget() *Budget { return p.budget }

// RetryOnStatus reports whether a response with this status code is
// retriable under the policy's conditions.
func (p *Policy) RetryOnStatus(code int) bool {
	if code < 0 || code >= 600 {
		return false
	}
	return p.status[code/64]&(1<<(code%64)) != 0
}

// RetryOnError reports whether a failed attempt of this kind is retriable
// under the policy's conditions. Other is never retriable.
func (p *Policy) RetryOnError(kind ErrorKind) bool {
	if kind <= Other || kind > Reset {
		return false
	}
	return p.errs&(1<<kind) != 0
}

// ErrorKind classifies why an attempt failed without a response.
type ErrorKind int

// Error kinds.
const (
	// Other is any failure not classified below (for example the client
	// cancelling); never retried.
	Other ErrorKind = iota
	// ConnectFailure means no connection was made: the backend never saw
	// the request.
	ConnectFailure
	// Timeout means the attempt's deadline passed after the request was
	// sent (or may have been).
	Timeout
	// Reset means the connection broke before a full response arrived.
	Reset
)

var errorKindNames = [...]string{Other: "other", ConnectFailure: "connect_failure", Timeout: "timeout", Reset: "reset"}

// String returns the kind's condition name ("other" for Other).
func (k ErrorKind) String() string {
	if k >= 0 && int(k) < len(errorKindNames) {
		return errorKindNames[k]
	}
	return fmt.Sprintf("error_kind(%d)", int(k))
}

// Classify returns the kind of an error returned by an http.RoundTripper or
// a dialer, using errors.As/Is on the typed errors of package net, os, io
// and syscall (never the message). A dial error is ConnectFailure even when
// it timed out, because the backend never saw the request; a cancelled
// context is Other.
func Classify(err error) ErrorKind {
	if err == nil || errors.Is(err, context.Canceled) {
		return Other
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) {
		return ConnectFailure
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout() {
		return Timeout
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return Reset
	}
	return Other
}

// IdempotencyKeyHeader is the request header whose presence makes any
// method safe to retry (draft-ietf-httpapi-idempotency-key-header).
const IdempotencyKeyHeader = "Idempotency-Key"

// Idempotent reports whether an HTTP method is idempotent by RFC 9110
// (GET, HEAD, OPTIONS, TRACE, PUT, DELETE). Methods are case-sensitive.
func Idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// Safe reports whether an attempt that failed may be retried without risking
// a duplicated side effect:
//
//   - an attempt that never reached a backend (reachedBackend false: a
//     connect failure) is always safe to retry, whatever the method;
//   - otherwise the method must be idempotent (see Idempotent) or the
//     request must carry an IdempotencyKeyHeader (hasIdempotencyKey).
//
// Safe says nothing about the body: the caller must also be able to replay
// it (http.Request.GetBody).
func Safe(method string, hasIdempotencyKey bool, reachedBackend bool) bool {
	return !reachedBackend || hasIdempotencyKey || Idempotent(method)
}
