// Command backend is a tiny, fast HTTP/1.1 server for benchmarks: it answers
// every request with a fixed body of -size bytes over keep-alive
// connections, with logging off.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen `address`")
	size := flag.Int("size", 1024, "response body size in `bytes`")
	flag.Parse()
	if *size < 0 {
		fmt.Fprintln(os.Stderr, "backend: -size must be >= 0")
		os.Exit(2)
	}
	body := bytes.Repeat([]byte("x"), *size)
	length := strconv.Itoa(len(body))
	srv := &http.Server{
		Addr: *addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"text/plain"}
			h["Content-Length"] = []string{length}
			w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	fmt.Fprintf(os.Stderr, "backend: serving %d-byte responses on %s\n", *size, *addr)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}
