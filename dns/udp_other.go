//go:build !linux

package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"

	"golang.org/x/net/ipv4"
)

// The portable UDP loop (udp_linux.go has the Linux one).

// ownUDP reports whether the server's own UDP loop can serve pc: a real
// UDP socket bound to a specific address. A wildcard address needs the
// reply to leave from the address the query came to (miekg/dns does that
// with IP_PKTINFO control messages; the Linux loop does it itself), so
// here it stays with miekg/dns.
func ownUDP(pc net.PacketConn) (*net.UDPConn, bool) {
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return nil, false
	}
	la, ok := u.LocalAddr().(*net.UDPAddr)
	if !ok || la.IP == nil || la.IP.IsUnspecified() {
		return nil, false
	}
	return u, true
}

// serveUDP answers on u with GOMAXPROCS workers until ctx is done (the
// caller closes u to stop them). Each worker reads a batch of queries,
// answers them in order without a goroutine per query, and writes the
// responses in one batch.
func (s *Server) serveUDP(ctx context.Context, u *net.UDPConn) error {
	pc := ipv4.NewPacketConn(u) // the batch calls work for IPv6 sockets too
	n := runtime.GOMAXPROCS(0)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { errs <- s.udpWorker(ctx, pc) })
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

func (s *Server) udpWorker(ctx context.Context, pc *ipv4.PacketConn) error {
	c := newFastCache(s)
	in := make([]ipv4.Message, udpBatch)
	outAll := make([]ipv4.Message, 0, udpBatch)
	outBufs := make([][]byte, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadSize)}
		outBufs[i] = make([]byte, 0, 512)
	}
	slots := make([][1][]byte, udpBatch)
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Debug("dns udp read failed", "err", err)
			continue
		}
		out := outAll[:0]
		for i := range n {
			m := &in[i]
			ua, _ := m.Addr.(*net.UDPAddr)
			if ua == nil {
				continue
			}
			src, _ := netip.AddrFromSlice(ua.IP)
			src = src.Unmap().WithZone(ua.Zone)
			resp := c.respond(m.Buffers[0][:m.N], src, outBufs[i])
			if resp == nil {
				continue
			}
			if cap(resp) <= 4096 && cap(resp) > cap(outBufs[i]) {
				outBufs[i] = resp[:0] // keep the larger buffer for the next round
			}
			slots[i][0] = resp
			out = append(out, ipv4.Message{Buffers: slots[i][:], Addr: m.Addr})
		}
		for len(out) > 0 {
			k, err := pc.WriteBatch(out, 0)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return nil
				}
				// The first message failed (e.g. no route to the client):
				// drop it, as miekg/dns drops a failed write.
				s.log.Debug("dns udp write failed", "client", out[0].Addr.String(), "err", err)
				k = 1
			}
			out = out[k:]
		}
	}
}
