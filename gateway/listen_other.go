//go:build !linux

package gateway

import "net"

// listenTCP listens on addr for the proxy listener, with net's default
// keep-alive set on each accepted connection (listen_linux.go sets it
// once on the listening socket).
func listenTCP(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
