package dns_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	mdns "github.com/miekg/dns"

	"github.com/switchyard/switchyard/dns"
)

// Example serves a zone with a load-balanced name on loopback and asks it
// for the name's address with a client in the "eu" region (by EDNS Client
// Subnet).
func Example() {
	site := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer site.Close()
	check := strings.TrimPrefix(site.URL, "http://")
	cfg, err := dns.ParseConfig([]byte(`
regions: {eu: [10.1.0.0/16]}
sites:
  - {name: eu-1, addresses: [192.0.2.10], check: "`+check+`"}
  - {name: us-1, addresses: [198.51.100.10], check: "`+check+`"}
zones:
  - origin: example.test.
    soa: {ns: ns1.example.test.}
    records: ["@ NS ns1", "ns1 A 192.0.2.53"]
    pools:
      - {name: app, sites: [eu-1, us-1], geo: {eu: [eu-1]}}
`), "dns.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := dns.New(*cfg, dns.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, pc, nil) }()
	defer func() { cancel(); <-done }()

	m := new(mdns.Msg)
	m.SetQuestion("app.example.test.", mdns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &mdns.EDNS0_SUBNET{
		Code: mdns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(10, 1, 2, 0).To4()})
	r, err := mdns.Exchange(m, pc.LocalAddr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(mdns.RcodeToString[r.Rcode], "aa:", r.Authoritative)
	fmt.Println(r.Answer[0])
	// Output:
	// NOERROR aa: true
	// app.example.test.	20	IN	A	192.0.2.10
}
