// Command tlsload is bench/tls.sh's handshake load client: W workers each
// open a TCP connection, do a TLS handshake (version pinned), send one
// small HTTP/1.1 request with "Connection: close", read the answer, close,
// and repeat. It prints "conns_per_s=X errors=E resumed=R kex=K
// suite=S": K and S are the key exchange group and cipher suite the
// server chose on the first connection (for a fair comparison every
// server must choose the same: X25519, no post-quantum hybrid, which
// this client does not offer). With -resume
// each worker keeps a session cache, so after its first connection every
// handshake is a resumption (TLS 1.3 PSK with (EC)DHE, TLS 1.2 session
// ticket); "resumed" counts the handshakes the server did resume.
//
// Why a Go client rather than openssl s_time or h2load: s_time makes one
// connection at a time (the proxy idles while the client computes), and
// h2load (nghttp2-client) opens one connection per client, not one per
// request. Server certificates are not verified (InsecureSkipVerify):
// the client's ECDSA verify would cost more than the server's sign and
// make the client the bottleneck; it is the same for every contender.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "", "target `host:port` (TLS)")
	workers := flag.Int("workers", 16, "concurrent connection loops")
	dur := flag.Duration("duration", 5*time.Second, "how long")
	version := flag.String("tls", "1.3", "TLS version: 1.2 or 1.3")
	resume := flag.Bool("resume", false, "resume sessions (a session cache per worker)")
	flag.Parse()
	var v uint16
	switch *version {
	case "1.2":
		v = tls.VersionTLS12
	case "1.3":
		v = tls.VersionTLS13
	default:
		fmt.Fprintf(os.Stderr, "tlsload: -tls %q: expected 1.2 or 1.3\n", *version)
		os.Exit(2)
	}
	if *addr == "" || *workers < 1 {
		fmt.Fprintln(os.Stderr, "tlsload: -addr HOST:PORT and -workers at least 1 are required")
		os.Exit(2)
	}
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
	var conns, errs, resumed atomic.Int64
	var first sync.Once
	var kex, suite string
	seen := func(st tls.ConnectionState) {
		first.Do(func() { kex, suite = st.CurveID.String(), tls.CipherSuiteName(st.CipherSuite) })
	}
	deadline := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		cfg := &tls.Config{MinVersion: v, MaxVersion: v, InsecureSkipVerify: true, ServerName: "localhost", //nolint:gosec // benchmark: same for all
			// X25519 for the key exchange (every server prefers it);
			// P-256 offered too because OpenSSL's TLS 1.2 servers require
			// the ECDSA certificate's curve among the client's groups.
			// No post-quantum hybrid: the same exchange for all.
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
		if *resume {
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReaderSize(nil, 4096)
			for time.Now().Before(deadline) {
				if err := one(*addr, cfg, req, br, &resumed, seen); err != nil {
					errs.Add(1)
					if errs.Load() == 1 {
						fmt.Fprintln(os.Stderr, "tlsload: first error:", err)
					}
					continue
				}
				conns.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("conns_per_s=%.0f errors=%d resumed=%d kex=%s suite=%s\n", float64(conns.Load())/el, errs.Load(), resumed.Load(), kex, suite)
}

func one(addr string, cfg *tls.Config, req []byte, br *bufio.Reader, resumed *atomic.Int64, seen func(tls.ConnectionState)) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(nc, cfg)
	if err := c.Handshake(); err != nil {
		return err
	}
	st := c.ConnectionState()
	if st.DidResume {
		resumed.Add(1)
	}
	seen(st)
	if _, err := c.Write(req); err != nil {
		return err
	}
	br.Reset(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}
