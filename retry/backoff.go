package retry

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Kind is how a backoff delay grows with the attempt number.
type Kind int

// Backoff kinds.
const (
	// Exponential waits Base * 2^(attempt-1).
	Exponential Kind = iota
	// Fixed waits Base before every retry.
	Fixed
	// Incremental waits Base * attempt.
	Incremental
)

var kindNames = [...]string{Exponential: "exponential", Fixed: "fixed", Incremental: "incremental"}

// String returns the kind's configuration name.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ParseKind parses "fixed", "incremental" or "exponential"; the empty
// string means Exponential.
func ParseKind(s string) (Kind, error) {
	if s == "" {
		return Exponential, nil
	}
	for k, name := range kindNames {
		if s == name {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("parsing backoff kind %q: expected fixed, incremental or exponential", s)
}

// Jitter is how a backoff delay is randomised so that clients that failed
// together do not retry together.
type Jitter int

// Jitter modes (names from the AWS architecture blog "Exponential Backoff
// And Jitter").
const (
	// FullJitter waits uniformly in [0, d).
	FullJitter Jitter = iota
	// NoJitter waits exactly d.
	NoJitter
	// EqualJitter waits d/2 plus uniformly [0, d/2).
	EqualJitter
)

var jitterNames = [...]string{FullJitter: "full", NoJitter: "none", EqualJitter: "equal"}

// String returns the jitter's configuration name.
func (j Jitter) String() string {
	if j >= 0 && int(j) < len(jitterNames) {
		return jitterNames[j]
	}
	return fmt.Sprintf("jitter(%d)", int(j))
}

// ParseJitter parses "none", "full" or "equal"; the empty string means
// FullJitter.
func ParseJitter(s string) (Jitter, error) {
	if s == "" {
		return FullJitter, nil
	}
	for j, name := range jitterNames {
		if s == name {
			return Jitter(j), nil
		}
	}
	return 0, fmt.Errorf("parsing backoff jitter %q: expected none, full or equal", s)
}

// Rand is the source of randomness for jitter. *rand.Rand of math/rand/v2
// implements it (but is not safe for concurrent use).
type Rand interface {
	// Int64N returns a uniform value in [0, n); n > 0.
	Int64N(n int64) int64
}

// Backoff computes the wait before a retry. The zero value waits nothing
// (Base 0). Safe for concurrent use when its Rand is.
type Backoff struct {
	// Kind is how the delay grows. Default Exponential.
	Kind Kind
	// Base is the delay of the first retry before jitter.
	Base time.Duration
	// Cap is the largest delay before jitter; 0 means no cap.
	Cap time.Duration
	// Jitter randomises the delay. Default FullJitter.
	Jitter Jitter
}

// Delay returns the wait before retry number attempt (1 for the first
// retry, that is the second try); attempt < 1 yields 0. The delay before
// jitter is min(Cap, growth(attempt)), saturating instead of overflowing;
// jitter then draws from rnd, or from the concurrency-safe math/rand/v2
// top-level functions when rnd is nil. Delay does not allocate.
func (b Backoff) Delay(attempt int, rnd Rand) time.Duration {
	if attempt < 1 || b.Base <= 0 {
		return 0
	}
	const maxDelay = time.Duration(1<<63 - 1)
	limit := maxDelay
	if b.Cap > 0 {
		limit = b.Cap
	}
	d := b.Base
	switch b.Kind {
	case Incremental:
		if d > limit/time.Duration(attempt) {
			d = limit
		} else {
			d *= time.Duration(attempt)
		}
	case Exponential:
		for i := 1; i < attempt && d < limit; i++ {
			if d > limit/2 {
				d = limit
			} else {
				d *= 2
			}
		}
	}
	d = min(d, limit)
	switch b.Jitter {
	case FullJitter:
		return time.Duration(int64n(rnd, int64(d)))
	case EqualJitter:
		half := d / 2
		return half + time.Duration(int64n(rnd, int64(d-half)))
	}
	return d
}

func int64n(rnd Rand, n int64) int64 {
	if n <= 0 {
		return 0
	}
	if rnd == nil {
		return rand.Int64N(n)
	}
	return rnd.Int64N(n)
}
