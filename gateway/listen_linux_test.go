package gateway

import (
	"net"
	"syscall"
	"testing"
)

// TestListenTCPKeepAlive: a connection accepted by the proxy listener has
// TCP keep-alive on with net's defaults (15s idle, 15s interval, 9
// probes), set on the listening socket only and inherited by the
// accepted one; the accepted socket still has TCP_NODELAY.
func TestListenTCPKeepAlive(t *testing.T) {
	ln, err := listenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := append(keepAliveOptions[:len(keepAliveOptions):len(keepAliveOptions)],
		struct{ level, name, value int }{syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1})
	if err := rc.Control(func(fd uintptr) {
		for _, o := range want {
			got, err := syscall.GetsockoptInt(int(fd), o.level, o.name)
			if err != nil || got != o.value {
				t.Errorf("accepted socket option %d/%d: %d %v, want %d", o.level, o.name, got, err, o.value)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
}
