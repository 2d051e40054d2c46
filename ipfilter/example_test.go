package ipfilter_test

import (
	"fmt"
	"net/http/httptest"
	"net/netip"

	"github.com/switchyard/switchyard/ipfilter"
)

func Example() {
	f, err := ipfilter.New(ipfilter.Config{
		Allow:          []string{"198.51.100.0/24", "2001:db8::/32"},
		Deny:           []string{"198.51.100.66"},
		TrustedProxies: []string{"10.0.0.0/8"},
	})
	if err != nil {
		panic(err)
	}
	// A request forwarded by the load balancer 10.0.0.5; the client forged
	// the leftmost entry.
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.5:40000"
	r.Header.Set("X-Forwarded-For", "1.2.3.4, 198.51.100.7")
	ip := f.ClientIP(r)
	fmt.Println(ip, f.Allowed(ip))
	fmt.Println(f.Allowed(netip.MustParseAddr("198.51.100.66")))
	// Output:
	// 198.51.100.7 true
	// false
}
