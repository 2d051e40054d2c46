package retry_test

import (
	"fmt"
	"time"

	"github.com/switchyard/switchyard/retry"
)

func Example() {
	p, err := retry.NewPolicy(retry.Config{
		Attempts: 3,
		Backoff:  "exponential",
		Base:     100 * time.Millisecond,
		Jitter:   "none",
		On:       []string{"connect_failure", "gateway_error"},
	})
	if err != nil {
		panic(err)
	}
	now := time.Unix(1_700_000_000, 0)
	p.Budget().Request(now) // an original request

	// The first try got a 503 from the backend.
	status, method, hasKey := 503, "POST", false
	for attempt := 1; attempt < p.Attempts(); attempt++ {
		if !p.RetryOnStatus(status) {
			break
		}
		if !retry.Safe(method, hasKey, true) {
			fmt.Println("not retried: POST reached the backend without an Idempotency-Key")
			break
		}
	}

	// The same request as a GET is retried after 100ms, then 200ms.
	for attempt := 1; attempt < p.Attempts(); attempt++ {
		if p.RetryOnStatus(status) && retry.Safe("GET", hasKey, true) && p.Budget().TryRetry(now) {
			fmt.Println("retry", attempt, "after", p.Backoff().Delay(attempt, nil))
		}
	}
	// Output:
	// not retried: POST reached the backend without an Idempotency-Key
	// retry 1 after 100ms
	// retry 2 after 200ms
}
