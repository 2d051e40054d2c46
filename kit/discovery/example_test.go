package discovery_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/discovery/registry"
)

// A service registers itself; a caller watches it and calls it by name
// through the discovery Transport.
func Example() {
	reg, _ := registry.Open(registry.Config{}) // in memory; `switchyard registry` in production
	defer reg.Close()
	regSrv := httptest.NewServer(registry.Handler(reg))
	defer regSrv.Close()

	rides := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "rides here: "+r.URL.Path)
	}))
	defer rides.Close()

	ctx := context.Background()
	c, _ := discovery.NewClient(regSrv.URL, nil)
	lease, err := c.Register(ctx, discovery.Registration{
		Service: "rides", ID: "rides-1", Address: strings.TrimPrefix(rides.URL, "http://"),
		Tags: []string{"v1"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lease.Close(ctx) // deregisters

	w, _ := c.Watch(ctx, "rides", discovery.WatchOptions{})
	defer w.Close()
	<-w.Ready()
	bal, _ := discovery.NewBalancer(w, discovery.BalancerConfig{})
	defer bal.Close()
	hc := &http.Client{Transport: &discovery.Transport{Balancer: bal}}
	resp, err := hc.Get("http://rides/v1/rides/42")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: rides here: /v1/rides/42
}
