package registry

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/discovery"
)

// rawStatus sends one raw HTTP/1.1 request to addr and returns the
// status code (0 when the connection answered nothing readable).
func rawStatus(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestLeaseForgedHeaders: the lease header is the only thing between a
// holder of the service's token and another registrant's instance. No
// value of it other than the lease acts on the instance: empty, the
// in-process bypass AnyLease ("\x00any", sent raw on the wire, with and
// without the NUL), the lease with spaces or in another case, a prefix,
// a huge value, two headers (the real lease second or first); and the
// instance is unchanged afterwards.
func TestLeaseForgedHeaders(t *testing.T) {
	r := open(t, Config{})
	srv := httptest.NewServer(Handler(r))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	in, err := r.RegisterLease(reg("rides", "r-1", "10.0.0.1:80", time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	lease := in.Lease
	body := `{"service":"rides","id":"r-1","address":"10.6.6.6:80","ttl":"1h"}`
	reqs := func(headers string) map[string]string {
		return map[string]string{
			"register":   fmt.Sprintf("PUT /v1/services/rides/instances/r-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s", len(body), headers, body),
			"heartbeat":  "PUT /v1/services/rides/instances/r-1/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + headers + "\r\n",
			"drain":      fmt.Sprintf("PUT /v1/services/rides/instances/r-1/state HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s", len(`{"state":"draining"}`), headers, `{"state":"draining"}`),
			"deregister": "DELETE /v1/services/rides/instances/r-1 HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n",
		}
	}
	for name, h := range map[string]string{
		"none":            "",
		"empty":           "X-Switchyard-Lease: \r\n",
		"AnyLease raw":    "X-Switchyard-Lease: \x00any\r\n",
		"any":             "X-Switchyard-Lease: any\r\n",
		"spaced":          "X-Switchyard-Lease: " + lease + " x\r\n",
		"upper":           "X-Switchyard-Lease: " + strings.ToUpper(lease) + "\r\n",
		"prefix":          "X-Switchyard-Lease: " + lease[:len(lease)-1] + "\r\n",
		"lease+NUL":       "X-Switchyard-Lease: " + lease + "\x00\r\n",
		"huge":            "X-Switchyard-Lease: " + strings.Repeat("A", 500<<10) + "\r\n",
		"wrong then real": "X-Switchyard-Lease: nope\r\nX-Switchyard-Lease: " + lease + "\r\n",
		"comma list":      "X-Switchyard-Lease: nope, " + lease + "\r\n",
	} {
		for op, req := range reqs(h) {
			if st := rawStatus(t, addr, req); st < 400 {
				t.Errorf("%s with lease header %s: status %d, want a refusal", op, name, st)
			}
		}
	}
	snap := r.Snapshot("rides")
	if len(snap.Instances) != 1 || snap.Instances[0].Address != "10.0.0.1:80" || snap.Instances[0].State != discovery.StateUp {
		t.Fatalf("instance after the attempts: %+v", snap.Instances)
	}
	// The real lease, first of two headers, is the lease (Header.Get).
	if st := rawStatus(t, addr, reqs("X-Switchyard-Lease: " + lease + "\r\nX-Switchyard-Lease: nope\r\n")["heartbeat"]); st != 200 {
		t.Fatalf("heartbeat with the lease: %d", st)
	}
}

// TestLeaseRaceOfRegistrants: many registrants race to register one new
// id: exactly one wins (its address is listed, its lease works), every
// other gets 409 lease_mismatch and no lease.
func TestLeaseRaceOfRegistrants(t *testing.T) {
	r := open(t, Config{})
	srv := httptest.NewServer(Handler(r))
	defer srv.Close()
	c, err := discovery.NewClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		wins   []discovery.Instance
		losses int
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := c.RegisterOnce(t.Context(), reg("rides", "r-1", fmt.Sprintf("10.0.0.%d:80", i+1), time.Hour))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins = append(wins, in)
			case isLeaseMismatch(err):
				losses++
			default:
				t.Errorf("registrant %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if len(wins) != 1 || losses != n-1 {
		t.Fatalf("%d won, %d lost; want 1 and %d", len(wins), losses, n-1)
	}
	snap := r.Snapshot("rides")
	if len(snap.Instances) != 1 || snap.Instances[0].Address != wins[0].Address {
		t.Fatalf("listed %+v, want the winner %s", snap.Instances, wins[0].Address)
	}
	if _, err := c.WithLease(wins[0].Lease).Heartbeat(t.Context(), "rides", "r-1"); err != nil {
		t.Fatalf("the winner's heartbeat: %v", err)
	}
}

func isLeaseMismatch(err error) bool {
	var ae *discovery.APIError
	return errors.As(err, &ae) && ae.Status == 409 && ae.Code == "lease_mismatch"
}

// TestLeaseHeaderNeverAnyLease: the handler never passes the in-process
// bypass AnyLease on, whatever the transport in front of it let through
// (net/http refuses a NUL in a header, other servers or proxies in front
// of the handler may not): called directly with that header value, every
// operation on another's instance is 409.
func TestLeaseHeaderNeverAnyLease(t *testing.T) {
	r := open(t, Config{})
	if _, err := r.RegisterLease(reg("rides", "r-1", "10.0.0.1:80", time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	h := Handler(r)
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/v1/services/rides/instances/r-1", `{"service":"rides","id":"r-1","address":"10.6.6.6:80","ttl":"1h"}`},
		{"PUT", "/v1/services/rides/instances/r-1/heartbeat", ""},
		{"PUT", "/v1/services/rides/instances/r-1/state", `{"state":"draining"}`},
		{"DELETE", "/v1/services/rides/instances/r-1", ""},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header[LeaseHeader] = []string{AnyLease}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusConflict {
			t.Errorf("%s %s with lease AnyLease: %d %s, want 409", tc.method, tc.path, w.Code, w.Body)
		}
	}
	if snap := r.Snapshot("rides"); len(snap.Instances) != 1 || snap.Instances[0].Address != "10.0.0.1:80" || snap.Instances[0].State != discovery.StateUp {
		t.Fatalf("instance after the attempts: %+v", snap.Instances)
	}
}
