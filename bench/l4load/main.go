// Command l4load is the load generator and backend of bench/l4.sh: an
// echo backend, and two closed-loop loads through a TCP proxy —
// throughput (connections streaming blocks that come back echoed) and
// connection rate (connect, one byte there and back, close).
//
//	l4load -serve 127.0.0.1:9000
//	l4load -mode throughput -addr 127.0.0.1:9100 -conns 8 -duration 10s
//	l4load -mode connrate -addr 127.0.0.1:9100 -conns 32 -duration 10s
//
// It prints one line: "throughput_mbps=..." or "conns_per_s=...".
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	serve := flag.String("serve", "", "run an echo backend on this address")
	mode := flag.String("mode", "throughput", "throughput or connrate")
	addr := flag.String("addr", "", "address of the proxy (or backend)")
	conns := flag.Int("conns", 8, "concurrent connections / workers")
	block := flag.Int("block", 64<<10, "bytes per write in throughput mode")
	duration := flag.Duration("duration", 10*time.Second, "how long to run")
	flag.Parse()
	if *serve != "" {
		if err := echo(*serve); err != nil {
			fmt.Fprintln(os.Stderr, "l4load:", err)
			os.Exit(1)
		}
		return
	}
	if *addr == "" {
		fmt.Fprintln(os.Stderr, "l4load: -addr is required")
		os.Exit(2)
	}
	switch *mode {
	case "throughput":
		n, err := throughput(*addr, *conns, *block, *duration)
		if err != nil {
			fmt.Fprintln(os.Stderr, "l4load:", err)
			os.Exit(1)
		}
		fmt.Printf("throughput_mbps=%.1f\n", float64(n)/duration.Seconds()/1e6)
	case "connrate":
		n, fails := connrate(*addr, *conns, *duration)
		fmt.Printf("conns_per_s=%.0f failures=%d\n", float64(n)/duration.Seconds(), fails)
	default:
		fmt.Fprintf(os.Stderr, "l4load: unknown -mode %q: expected throughput or connrate\n", *mode)
		os.Exit(2)
	}
}

func echo(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// throughput streams blocks on conns connections and counts the bytes
// that come back.
func throughput(addr string, conns, block int, d time.Duration) (int64, error) {
	var got atomic.Int64
	var counting atomic.Bool
	var wg sync.WaitGroup
	stop := time.Now().Add(d + time.Second) // one warm-up second
	errs := make(chan error, conns)
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, err
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, block)
			for time.Now().Before(stop) {
				if _, err := c.Write(buf); err != nil {
					errs <- err
					return
				}
			}
			c.(*net.TCPConn).CloseWrite()
		}()
		go func() {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 256<<10)
			for {
				n, err := c.Read(buf)
				if counting.Load() {
					got.Add(int64(n))
				}
				if err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(time.Second)
	counting.Store(true)
	start := time.Now()
	time.Sleep(d)
	counting.Store(false)
	elapsed := time.Since(start)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return int64(float64(got.Load()) * d.Seconds() / elapsed.Seconds()), nil
}

// connrate opens, uses and closes connections as fast as workers can.
func connrate(addr string, workers int, d time.Duration) (int64, int64) {
	var ok, fail atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := []byte{'x'}
			for time.Now().Before(deadline) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					fail.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(b); err == nil {
					if _, err = io.ReadFull(c, b); err == nil {
						ok.Add(1)
					} else {
						fail.Add(1)
					}
				} else {
					fail.Add(1)
				}
				c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT pile-up on the client side
				c.Close()
			}
		}()
	}
	wg.Wait()
	return ok.Load(), fail.Load()
}
