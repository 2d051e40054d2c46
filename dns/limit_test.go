package dns

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestTCPConnectionFloodIsBounded: one client opening many TCP
// connections and keeping them alive with messages the server ignores (a
// response, QR set) holds at most max_tcp_connections_per_client of them;
// the rest are closed at accept, and a query on a connection within the
// bound is still answered. Before the bound every connection stayed open
// (3,000 held from one address with 14 bytes per second each).
func TestTCPConnectionFloodIsBounded(t *testing.T) {
	_, addr := start(t, `
max_tcp_connections: 50
max_tcp_connections_per_client: 4
zones:
  - origin: example.test.
    soa: {ns: ns1.example.test.}
    records: ["@ NS ns1", "ns1 A 192.0.2.53"]
`)
	ignored := new(mdns.Msg)
	ignored.SetQuestion("example.test.", mdns.TypeA)
	ignored.Response = true
	wire, err := ignored.Pack()
	if err != nil {
		t.Fatal(err)
	}
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(wire)))
	frame = append(frame, wire...)

	var open []net.Conn
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	for range 12 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		c.Write(frame)
	}
	// Count the connections the server keeps: a closed one reads EOF (or
	// a reset) at once, a kept one times out.
	kept := 0
	for _, c := range open {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			kept++
		case err == nil:
			t.Fatal("the server answered a response (QR set)")
		case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || err != nil:
		}
	}
	if kept != 4 {
		t.Fatalf("the server kept %d of 12 connections from one client, want max_tcp_connections_per_client = 4", kept)
	}
	// A kept connection still answers.
	for _, c := range open {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		dc := &mdns.Conn{Conn: c}
		q := query("ns1.example.test.", mdns.TypeA)
		if dc.WriteMsg(q) != nil {
			continue
		}
		r, err := dc.ReadMsg()
		if err != nil {
			continue
		}
		if len(r.Answer) != 1 {
			t.Fatalf("answer %v", r)
		}
		// Closing frees the slot: a new connection is kept again.
		c.Close()
		waitFor(t, "a new connection answered after one closed", func() bool {
			cl := &mdns.Client{Net: "tcp", Timeout: 500 * time.Millisecond}
			r, _, err := cl.Exchange(query("ns1.example.test.", mdns.TypeA), addr)
			return err == nil && len(r.Answer) == 1
		})
		return
	}
	t.Fatal("no kept connection answered a query")
}
