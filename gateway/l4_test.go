package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/kit/discovery"
)

// tcpNamed answers every connection with its name and closes.
func tcpNamed(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", name)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func udpNamed(t *testing.T, name string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(name+":"+string(buf[:n])), from)
		}
	}()
	return pc.LocalAddr().String()
}

func readName(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && err != io.EOF {
		return "read: " + err.Error()
	}
	return strings.TrimSpace(line)
}

// TestL4ListenersShareUpstreams runs a TCP and a UDP listener over the
// gateway's upstreams: balanced, health-checked like L7 (a target that
// fails its TCP check stops getting connections), and pointed at new
// targets by a reload without restarting the listener.
func TestL4ListenersShareUpstreams(t *testing.T) {
	a, b, c := tcpNamed(t, "a"), tcpNamed(t, "b"), tcpNamed(t, "c")
	ua := udpNamed(t, "ua")
	cfg := func(tcpTargets string) string {
		return fmt.Sprintf(`
listen: 127.0.0.1:0
access_log: off
upstreams:
  db:
    targets: [%s]
    health_check: { interval: 100ms, timeout: 100ms, unhealthy_after: 1, healthy_after: 1 }
  dns:
    targets: [{address: %q}]
l4:
  - name: db
    listen: 127.0.0.1:0
    upstream: db
  - name: dns
    listen: 127.0.0.1:0
    protocol: udp
    upstream: dns
`, tcpTargets, ua)
	}
	r := startGateway(t, cfg(fmt.Sprintf("{address: %q}, {address: %q}", a, b)))
	addrs := r.g.L4Addrs()
	if len(addrs) != 2 {
		t.Fatalf("l4 addresses %v", addrs)
	}
	tcpAddr := addrs[0].String()
	seen := map[string]int{}
	for range 6 {
		seen[readName(t, tcpAddr)]++
	}
	if seen["a"] != 3 || seen["b"] != 3 {
		t.Fatalf("round robin over a and b: %v", seen)
	}

	// UDP: the datagram comes back from the target through the session.
	uc, err := net.Dial("udp", addrs[1].String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.Write([]byte("hello"))
	uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 100)
	n, err := uc.Read(buf)
	if err != nil || string(buf[:n]) != "ua:hello" {
		t.Fatalf("udp answer %q %v", buf[:n], err)
	}

	// Reload: c replaces b, on the same listener.
	r.rewrite(t, cfg(fmt.Sprintf("{address: %q}, {address: %q}", a, c)))
	if err := r.g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.g.L4Addrs()[0].String(); got != tcpAddr {
		t.Fatalf("listener moved from %s to %s", tcpAddr, got)
	}
	seen = map[string]int{}
	for range 6 {
		seen[readName(t, tcpAddr)]++
	}
	if seen["a"] != 3 || seen["c"] != 3 {
		t.Fatalf("after reload, round robin over a and c: %v", seen)
	}

	// Health: a target that stops listening fails its TCP check and
	// gets no more connections.
	dead := deadAddr(t)
	r.rewrite(t, cfg(fmt.Sprintf("{address: %q}, {address: %q}", a, dead)))
	if err := r.g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the dead target to be marked unhealthy", func() bool {
		for _, tg := range r.g.current.Load().pools["db"].Targets() {
			if tg.Address == dead {
				return !tg.Healthy()
			}
		}
		return false
	})
	for range 6 {
		if got := readName(t, tcpAddr); got != "a" {
			t.Fatalf("with the other target down: %q", got)
		}
	}
	// A reload that changes a listener's settings is refused, naming what
	// changed; the old one keeps going.
	r.rewrite(t, strings.Replace(cfg(fmt.Sprintf("{address: %q}", a)), "protocol: udp", "protocol: udp\n    max_connections: 10", 1))
	err = r.g.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), `l4[1].max_connections: changed from 0 to 10: needs a restart`) {
		t.Fatalf("reload changing a listener's limit: %v", err)
	}
	if got := readName(t, tcpAddr); got != "a" {
		t.Fatalf("after the refused reload: %q", got)
	}
}

func TestL4ConfigErrors(t *testing.T) {
	cases := map[string]string{
		"l4[0].upstream: unknown upstream":  "l4: [{listen: 127.0.0.1:0, upstream: nope}]",
		"l4[0].protocol: unknown protocol":  "l4: [{listen: 127.0.0.1:0, upstream: u, protocol: sctp}]",
		"l4[0].listen: missing":             "l4: [{upstream: u}]",
		"l4[0].keepalive: negative":         "l4: [{listen: 127.0.0.1:0, upstream: u, keepalive: -1s}]",
		"l4[0].keepalive: TCP keepalive":    "l4: [{listen: 127.0.0.1:0, upstream: u, protocol: udp, keepalive: 30s}]",
		"l4[0].sni: sni passes TLS through": "l4: [{listen: 127.0.0.1:0, tls: {cert: a, key: b}, sni: [{names: [a.test], upstream: u}]}]",
		"l4[0].proxy_protocol: v1 carries":  "l4: [{listen: 127.0.0.1:0, upstream: u, protocol: udp, proxy_protocol: v1}]",
		"l4[0].sni[0].names[0]":             "l4: [{listen: 127.0.0.1:0, sni: [{names: ['a*.test'], upstream: u}]}]",
		"l4[1].listen: tcp 127.0.0.1:9":     "l4: [{listen: 127.0.0.1:9, upstream: u}, {listen: 127.0.0.1:9, upstream: u}]",
		"l4[0].sni[0].names[1]: \"api.test.\": expected a host name without a trailing dot": "l4: [{listen: 127.0.0.1:0, sni: [{names: [a.test, api.test.], upstream: u}]}]",
		"l4[0].sni[0].names[0]: \"*..test\"":                                                "l4: [{listen: 127.0.0.1:0, sni: [{names: ['*..test'], upstream: u}]}]",
	}
	for want, l4 := range cases {
		_, err := ParseConfig([]byte("listen: 127.0.0.1:0\nupstreams: {u: {targets: [{address: 127.0.0.1:1}]}}\n"+l4+"\n"), "gw.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", l4, err)
		}
	}
}

// TestL4OverDiscoveredUpstream: an l4 listener over an upstream whose
// targets come from the registry picks up instances as they join and
// stops using one that leaves, without a reload.
func TestL4OverDiscoveredUpstream(t *testing.T) {
	regURL, c := startRegistry(t)
	ctx := context.Background()
	a, b := tcpNamed(t, "a"), tcpNamed(t, "b")
	la, err := c.Register(ctx, discovery.Registration{Service: "db", ID: "a", Address: a, TTL: config.Duration(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	r := startGateway(t, fmt.Sprintf(`listen: 127.0.0.1:0
access_log: off
discovery: {registry: %s}
upstreams:
  db: {discover: db}
l4:
  - {listen: 127.0.0.1:0, upstream: db}
`, regURL))
	addr := r.g.L4Addrs()[0].String()
	if got := readName(t, addr); got != "a" {
		t.Fatalf("with one instance: %q", got)
	}
	lb, err := c.Register(ctx, discovery.Registration{Service: "db", ID: "b", Address: b, TTL: config.Duration(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close(ctx)
	eventually(t, 10*time.Second, "b to get connections", func() bool { return readName(t, addr) == "b" })
	if err := la.Close(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a to leave", func() bool {
		for range 4 {
			if readName(t, addr) != "b" {
				return false
			}
		}
		return true
	})
}
