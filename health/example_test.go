package health_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/upstream"
)

func Example() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer backend.Close()
	target := upstream.NewTarget(strings.TrimPrefix(backend.URL, "http://"), 0, 1)
	pool := []*upstream.Target{target}

	// Active checks: the backend answers 503, so after two checks the
	// target is marked unhealthy.
	changed := make(chan bool, 1)
	checker, err := health.NewChecker(health.CheckConfig{Path: "/healthz", Interval: 10 * time.Millisecond}, pool,
		health.CheckerOptions{OnChange: func(t *upstream.Target, healthy bool) { changed <- healthy }})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- checker.Run(ctx) }()
	fmt.Println("healthy:", <-changed)
	cancel()
	<-done

	// Passive outlier detection: five failed responses in a row eject it.
	outlier, err := health.NewOutlier(health.OutlierConfig{MaxEjected: 1}, pool)
	if err != nil {
		panic(err)
	}
	now := time.Unix(1_700_000_000, 0)
	for range 5 {
		if outlier.Observe(target, true, now) {
			fmt.Println("ejected for", target.EjectedUntil().Sub(now))
		}
	}
	// Output:
	// healthy: false
	// ejected for 30s
}
