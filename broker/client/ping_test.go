package client

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/native"
)

// TestConnAnswersPings: a server that pings idle connections (here every
// 30ms, closing after 60ms more) must not cut off a Conn that is idle or
// blocked in a long-poll receive: the Conn answers its pings.
func TestConnAnswersPings(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	if err := b.Declare("q", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		native.New(b, native.Options{PingInterval: 30 * time.Millisecond, PingTimeout: 60 * time.Millisecond}).Serve(ctx, ln)
	}()
	defer func() { cancel(); <-done }()
	c, err := Dial(ctx, ln.Addr().String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.mu.Lock()
	first := c.cur
	c.mu.Unlock()
	// A long poll spanning many ping intervals ends normally.
	ds, err := c.Receive(ctx, "q", broker.ReceiveOptions{Wait: 500 * time.Millisecond})
	if err != nil || len(ds) != 0 {
		t.Fatalf("long poll: %v %v", ds, err)
	}
	if _, err := c.Publish(ctx, "q", broker.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	same := c.cur == first
	c.mu.Unlock()
	if !same {
		t.Fatal("the connection was replaced: the server closed it")
	}
}
