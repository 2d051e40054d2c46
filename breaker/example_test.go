package breaker_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/breaker"
)

func Example() {
	now := time.Unix(0, 0)
	b, err := breaker.New(breaker.Config{MinRequests: 4, FailureRatio: 0.5, OpenFor: 10 * time.Second},
		breaker.Options{
			Now:           func() time.Time { return now },
			OnStateChange: func(from, to breaker.State) { fmt.Printf("%v -> %v\n", from, to) },
		})
	if err != nil {
		panic(err)
	}
	for _, ok := range []bool{true, false, true, false} {
		if b.Allow() == nil {
			b.Record(ok) // the request's outcome
		}
	}
	var open *breaker.OpenError
	if err := b.Allow(); errors.As(err, &open) {
		fmt.Println("refused, retry after", open.RetryAfter())
	}
	now = now.Add(10 * time.Second)
	for range 3 { // default HalfOpenProbes
		if b.Allow() == nil {
			b.Record(true)
		}
	}
	fmt.Println(b.State())
	// Output:
	// closed -> open
	// refused, retry after 10s
	// open -> half-open
	// half-open -> closed
	// closed
}
