// Command tlsflood checks that a TLS handshake flood does not starve
// other clients: for -d it measures two probe clients of an HTTPS
// listener (one keep-alive connection, and a new connection per request;
// GET -path every 20ms, certificate verified against -ca with server name
// -sni), first alone (baseline), then while one flooder does -rate full
// handshakes a second (each a new TCP connection, closed after the
// handshake; at most 64 in flight) and holds -stalled connections that
// never send a ClientHello. It prints each probe's successes, errors and
// latency quantiles for both phases, and the handshakes the flood did.
// A 5xx answer counts as a probe error. docs/security.md ("Defaults").
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type stats struct {
	mu   sync.Mutex
	lat  []time.Duration
	errs int
	last error
}

func (s *stats) add(d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs++
		s.last = err
		return
	}
	s.lat = append(s.lat, d)
}

func (s *stats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := append([]time.Duration(nil), s.lat...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	q := func(p float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		return l[int(float64(len(l)-1)*p)]
	}
	return fmt.Sprintf("ok=%d errors=%d p50=%v p90=%v p99=%v max=%v last_err=%v", len(l), s.errs, q(.5), q(.9), q(.99), q(1), s.last)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "HTTPS listener (host:port)")
	ca := flag.String("ca", "", "PEM CA bundle that verifies the listener (required)")
	rate := flag.Int("rate", 300, "handshakes/s")
	dur := flag.Duration("d", 10*time.Second, "length of each phase")
	stalled := flag.Int("stalled", 0, "connections that never send a ClientHello")
	path := flag.String("path", "/healthz", "")
	sni := flag.String("sni", "gateway", "server name the probes verify")
	flag.Parse()
	pem, err := os.ReadFile(*ca)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool, ServerName: *sni}

	probe := func(keep bool, d time.Duration) *stats {
		s := &stats{}
		tr := &http.Transport{TLSClientConfig: tc, DisableKeepAlives: !keep, ForceAttemptHTTP2: false, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			t0 := time.Now()
			resp, err := c.Get("https://" + *addr + *path)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			s.add(time.Since(t0), err)
			time.Sleep(20 * time.Millisecond)
		}
		return s
	}
	run := func(label string) {
		var wg sync.WaitGroup
		var a, b *stats
		wg.Add(2)
		go func() { defer wg.Done(); a = probe(true, *dur) }()
		go func() { defer wg.Done(); b = probe(false, *dur) }()
		wg.Wait()
		fmt.Printf("%s keep-alive client: %v\n%s new-conn client:   %v\n", label, a, label, b)
	}
	run("baseline")

	// flood
	stop := make(chan struct{})
	var hs, hsErr atomic.Int64
	var fw sync.WaitGroup
	var held []net.Conn
	for i := 0; i < *stalled; i++ {
		c, err := net.Dial("tcp", *addr)
		if err == nil {
			held = append(held, c)
		}
	}
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	fw.Add(1)
	go func() {
		defer fw.Done()
		sem := make(chan struct{}, 64)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				hsErr.Add(1) // could not keep the rate
				continue
			}
			go func() {
				defer func() { <-sem }()
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", *addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
				if err != nil {
					hsErr.Add(1)
					return
				}
				hs.Add(1)
				c.Close()
			}()
		}
	}()
	t0 := time.Now()
	run("flood")
	close(stop)
	fw.Wait()
	el := time.Since(t0).Seconds()
	fmt.Printf("flood: %d handshakes in %.1fs (%.0f/s), %d failed or skipped, %d stalled connections held\n", hs.Load(), el, float64(hs.Load())/el, hsErr.Load(), len(held))
	for _, c := range held {
		c.Close()
	}
}
