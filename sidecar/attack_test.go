package sidecar

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/discovery"
)

// TestAmbassadorReachesOnlyItsDependencies: the outbound port is a way
// out of the app's host to the services it depends on, and to nothing
// else. A registered service that is not a dependency ("internal") is out
// of reach however the request is written: dot segments (plain,
// percent-encoded, with backslashes) that would climb out of /payments/,
// an absolute-form request line naming another host, a Host header
// naming the other service, CONNECT; a path only sharing the prefix
// (/paymentsx) is not the dependency. None of them reaches internal, and
// payments never sees a dot segment.
func TestAmbassadorReachesOnlyItsDependencies(t *testing.T) {
	regURL, c := startRegistry(t)
	payments := newApp(t, "payments-1")
	internal := newApp(t, "internal-1")
	for _, a := range []struct {
		service string
		app     *app
	}{{"payments", payments}, {"internal", internal}} {
		if _, err := c.RegisterOnce(context.Background(), discovery.Registration{
			Service: a.service, ID: a.service + "-1", Address: a.app.addr(), TTL: 0,
		}); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := runSidecar(t, sidecarYAML("rides", newApp(t, "rides-1").addr(), regURL, "dependencies: {payments: {}}\n"))
	out := s.OutboundAddr().String()
	if code, body := get(t, "http://"+out+"/payments/charge", ""); code != 200 || body != "payments-1" {
		t.Fatalf("the dependency: %d %q", code, body)
	}

	// raw sends a request line and headers as written (no client
	// normalises them) and returns the status.
	raw := func(reqLine string, hdr ...string) int {
		t.Helper()
		nc, err := net.Dial("tcp", out)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		host := "Host: " + out
		for _, h := range hdr {
			if strings.HasPrefix(strings.ToLower(h), "host:") {
				host = ""
			}
		}
		msg := reqLine + "\r\n"
		if host != "" {
			msg += host + "\r\n"
		}
		for _, h := range hdr {
			msg += h + "\r\n"
		}
		msg += "Connection: close\r\n\r\n"
		if _, err := nc.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			t.Fatalf("%q: %v", reqLine, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	internalAddr := internal.addr()
	for _, tc := range []struct {
		line string
		hdr  []string
		want int // 0: anything but a 2xx from internal
	}{
		{"GET /internal/secret HTTP/1.1", nil, 404},
		{"GET /paymentsx/secret HTTP/1.1", nil, 404},
		{"GET /payments/../internal/secret HTTP/1.1", nil, 400},
		{"GET /payments/%2e%2e/internal/secret HTTP/1.1", nil, 400},
		{"GET /payments/%2E%2E%2Finternal%2Fsecret HTTP/1.1", nil, 400},
		{"GET /payments/..%5Cinternal HTTP/1.1", nil, 400},
		{"GET /payments\\..\\internal HTTP/1.1", nil, 400},
		{"GET /payments/./../internal HTTP/1.1", nil, 400},
		{"GET //payments/../internal HTTP/1.1", nil, 400},
		// An absolute-form target whose host is not the Host header's
		// is refused outright.
		{"GET http://" + internalAddr + "/secret HTTP/1.1", nil, 400},
		{"GET http://" + internalAddr + "/payments/abs HTTP/1.1", nil, 400},
		{"GET http://internal/secret HTTP/1.1", []string{"Host: internal"}, 404},
		{"GET /secret HTTP/1.1", []string{"Host: internal"}, 404},
		{"GET /secret HTTP/1.1", []string{"Host: " + internalAddr}, 404},
		{"CONNECT " + internalAddr + " HTTP/1.1", []string{"Host: " + internalAddr}, 0},
		// These reach payments (the dependency named in the path),
		// whatever host they name.
		{"GET http://" + internalAddr + "/payments/abs HTTP/1.1", []string{"Host: " + internalAddr}, 200},
		{"GET /payments/host HTTP/1.1", []string{"Host: internal"}, 200},
		{"GET /payments/fwd HTTP/1.1", []string{"X-Forwarded-Host: " + internalAddr}, 200},
	} {
		got := raw(tc.line, tc.hdr...)
		if tc.want != 0 && got != tc.want || tc.want == 0 && got < 300 {
			t.Errorf("%s %v: %d, want %d", tc.line, tc.hdr, got, tc.want)
		}
	}
	internal.mu.Lock()
	reached := append([]string(nil), internal.paths...)
	internal.mu.Unlock()
	if len(reached) > 0 {
		t.Fatalf("the service that is not a dependency was reached: %q", reached)
	}
	payments.mu.Lock()
	defer payments.mu.Unlock()
	for _, p := range payments.paths {
		if strings.Contains(p, "..") || strings.Contains(p, "internal") {
			t.Fatalf("payments got %q", p)
		}
	}
	if want := fmt.Sprint([]string{"/charge", "/abs", "/host", "/fwd"}); fmt.Sprint(payments.paths) != want {
		t.Fatalf("payments got %v, want %s", payments.paths, want)
	}
}
