package l4_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/l4"
)

// pushBackend writes burst bytes, then a short line every 20 ms until the
// connection breaks: a server push (pub/sub, a log tail) whose client
// never writes again.
func pushBackend(t *testing.T, burst int) string {
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
			go func() {
				defer c.Close()
				if _, err := c.Write(make([]byte, burst)); err != nil {
					return
				}
				for i := 0; ; i++ {
					if _, err := fmt.Fprintf(c, "push %d\n", i); err != nil {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// A connection that only the upstream talks on is not idle: the idle
// clock must see bytes one direction moves even while its copy (a splice
// of up to 64 KiB) has not returned yet; after a burst and with lines
// only.
func TestTCPOneWayTrafficIsNotIdle(t *testing.T) {
	for _, c := range []struct {
		name  string
		burst int
		idle  time.Duration
	}{{"spliced", 64 << 10, time.Second}, {"small", 0, time.Second}} {
		t.Run(c.name, func(t *testing.T) {
			addr, _ := serveTCP(t, l4.TCPConfig{Backend: backend(t, pushBackend(t, c.burst)), IdleTimeout: c.idle})
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(br, make([]byte, c.burst)); err != nil {
				t.Fatal(err)
			}
			// Lines for several idle timeouts, one every 20 ms.
			n := int(3*c.idle/(20*time.Millisecond)) + 25
			for i := range n {
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := br.ReadString('\n'); err != nil {
					t.Fatalf("one-way connection cut as idle after %d lines: %v", i, err)
				}
			}
		})
	}
}

// Datagrams from new source ports (trivially spoofed) past MaxSessions
// open no session: they are dropped and counted as rejected, while the
// sessions already open keep working.
func TestUDPSessionLimitAgainstManySourcePorts(t *testing.T) {
	up, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := up.ReadFrom(buf)
			if err != nil {
				return
			}
			up.WriteTo(buf[:n], from)
		}
	}()
	s, err := l4.NewUDP(l4.UDPConfig{Backend: backend(t, up.LocalAddr().String()), MaxSessions: 3})
	if err != nil {
		t.Fatal(err)
	}
	pc, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	go s.Serve(pc)
	defer func() { s.Close(); pc.Close() }()
	keep, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	echo := func() error {
		keep.Write([]byte("hi"))
		keep.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := keep.Read(make([]byte, 16))
		return err
	}
	if err := echo(); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		c, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("flood"))
		c.Close()
	}
	waitFor(t, "the flood to be counted", func() bool { st := s.Stats(); return st.Accepted+st.Rejected == 21 })
	if st := s.Stats(); st.Active != 3 || st.Rejected != 18 {
		t.Fatalf("stats %+v, want 3 sessions and 18 rejected", st)
	}
	if err := echo(); err != nil {
		t.Fatalf("the first client's session after the flood: %v", err)
	}
}

// A client that stops reading while the upstream keeps sending leaves
// the copy towards it blocked in a write: no bytes move either way, so
// the connection is idle and must end, freeing both sockets.
func TestTCPClientThatStopsReadingIsIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	upClosed := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				close(upClosed)
				return
			}
		}
	}()
	addr, s := serveTCP(t, l4.TCPConfig{Backend: backend(t, ln.Addr().String()), IdleTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // never read
	waitFor(t, "the stalled connection to end", func() bool { return s.Stats().Active == 0 && s.Stats().Accepted == 1 })
	select {
	case <-upClosed:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream connection stayed open")
	}
}

// A client that floods an echoing upstream and never reads: the upstream
// stops reading once its writes back block, so both copies block in
// writes and no read deadline ever fires. No byte moves either way, so
// the connection is idle and must end all the same.
func TestTCPBothWaysStuckIsIdle(t *testing.T) {
	addr, s := serveTCP(t, l4.TCPConfig{Backend: backend(t, tcpBackend(t, "a", nil)), IdleTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the stalled connection to end", func() bool { st := s.Stats(); return st.Accepted == 1 && st.Active == 0 })
}

// A PROXY v1 header carries bare addresses: an IPv6 zone ("%eth0") is no
// part of the spec's grammar and makes upstreams reject the connection.
func TestProxyV1DropsIPv6Zone(t *testing.T) {
	src := &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 4000, Zone: "eth0"}
	dst := &net.TCPAddr{IP: net.ParseIP("fe80::2"), Port: 443, Zone: "eth0"}
	got, err := l4.AppendProxyHeader(nil, l4.ProxyV1, src, dst, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := "PROXY TCP6 fe80::1 fe80::2 4000 443\r\n"; string(got) != want {
		t.Fatalf("header %q, want %q", got, want)
	}
}

// flakyListener fails its first Accept with err, as accept(2) does when
// the system runs out of file table entries or buffer memory.
type flakyListener struct {
	net.Listener
	err  error
	once sync.Once
}

func (l *flakyListener) Accept() (net.Conn, error) {
	var err error
	l.once.Do(func() { err = l.err })
	if err != nil {
		return nil, err
	}
	return l.Listener.Accept()
}

// Resource exhaustion an attacker can cause (ENFILE: the system's file
// table is full; ENOBUFS, ENOMEM) passes; it must not stop the listener
// for good, as it did for everything but EMFILE and timeouts.
func TestTCPAcceptSurvivesResourceExhaustion(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		t.Run(errno.Error(), func(t *testing.T) {
			s, err := l4.NewTCP(l4.TCPConfig{Backend: backend(t, tcpBackend(t, "a", nil))})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() {
				served <- s.Serve(&flakyListener{Listener: ln, err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}})
			}()
			defer s.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				select {
				case err := <-served:
					t.Fatalf("Serve returned %v after one %v", err, errno)
				default:
				}
				t.Fatalf("no greeting: %v", err)
			}
			if line != "a\n" {
				t.Fatalf("greeting %q", line)
			}
		})
	}
}
