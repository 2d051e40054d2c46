package l4_test

import (
	"context"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/l4"
	"github.com/switchyard/switchyard/upstream"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConnRate opens short connections through a real l4 listener
// to a real loopback echo backend: connect, send 4 bytes, read the echo,
// close. It reports allocations and process CPU time (client, proxy and
// backend together: compare builds in the same run) per connection.
func BenchmarkConnRate(b *testing.B) {
	eln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer eln.Close()
	go func() {
		for {
			c, err := eln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 512) // read and write, as bench/l4load's backend
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	targets := []*upstream.Target{upstream.NewTarget(eln.Addr().String(), 0, 1)}
	p, err := balance.New(balance.Config{Policy: "round_robin"}, targets)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := l4.NewTCP(l4.TCPConfig{Name: "bench", Backend: &l4.Backend{Name: "echo", Policy: p}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := l4.ListenConfig(0).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		<-served
	}()
	addr := ln.Addr().String()
	const workers = 4
	one := func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping")); err != nil {
			b.Error(err)
			return
		}
		var buf [4]byte
		if _, err := io.ReadFull(c, buf[:]); err != nil || string(buf[:]) != "ping" {
			b.Errorf("echo %q, %v; want ping", buf, err)
		}
	}
	for range 50 { // warm up pools and the accept path
		one()
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime(b)
	var wg sync.WaitGroup
	next := make(chan struct{})
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				one()
			}
		}()
	}
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(b.N), "cpu-us/conn")
}
