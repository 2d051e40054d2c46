package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/discovery/registry"
	"github.com/switchyard/switchyard/sidecar"
)

// A payments app behind its sidecar is registered under the sidecar's
// inbound address; a rides sidecar's outbound port reaches it by name.
func Example() {
	reg, _ := registry.Open(registry.Config{})
	defer reg.Close()
	regSrv := httptest.NewServer(registry.Handler(reg))
	defer regSrv.Close()

	payments := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "payments got %s", r.URL.Path)
	}))
	defer payments.Close()

	run := func(yaml string) (*sidecar.Sidecar, func()) {
		cfg, err := sidecar.ParseConfig([]byte(yaml), "example.yaml")
		if err != nil {
			panic(err)
		}
		s, err := sidecar.New(cfg, sidecar.Options{Logger: slog.New(slog.DiscardHandler), AccessLogWriter: io.Discard})
		if err != nil {
			panic(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		<-s.Ready()
		return s, func() { cancel(); <-done }
	}
	common := "listen: 127.0.0.1:0\noutbound: 127.0.0.1:0\nadmin: off\nregistry: " + regSrv.URL + "\n"
	pay, stopPay := run("service: payments\napp: " + strings.TrimPrefix(payments.URL, "http://") + "\n" + common)
	defer stopPay()
	for !pay.Registered() {
		time.Sleep(time.Millisecond)
	}
	rides, stopRides := run("service: rides\napp: 127.0.0.1:9\ndependencies: {payments: {}}\n" + common)
	defer stopRides()

	c, _ := discovery.NewClient(regSrv.URL, nil)
	snap, _ := c.Service(context.Background(), "payments", 0, 0)
	fmt.Println("registered at the sidecar:", snap.Instances[0].Address == pay.Addr().String())

	resp, err := http.Get("http://" + rides.OutboundAddr().String() + "/payments/charge")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// registered at the sidecar: true
	// 200 payments got /charge
}
