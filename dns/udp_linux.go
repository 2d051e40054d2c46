package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Linux UDP loop. Each worker owns its message headers, buffers and
// address slots, and calls recvmmsg and sendmmsg itself on the
// non-blocking socket (through syscall.RawConn, so an empty socket parks
// the goroutine in the runtime's poller as any read would). Compared with
// golang.org/x/net's ReadBatch/WriteBatch this allocates nothing per
// datagram: the client's address stays in its raw sockaddr slot, is read
// once into a netip.Addr for the answer, and the same slot addresses the
// reply. (The calls go through syscall.Syscall6, not RawSyscall6: a raw
// call never lets the runtime hand the P on, and on a shared CPU that
// left the worker's one thread starved: see docs/dns.md, "UDP loop".)
//
// A socket bound to a wildcard address (0.0.0.0, ::) asks for the
// destination of each query (IP_PKTINFO, IPV6_RECVPKTINFO) and sends the
// reply from that address, as miekg/dns does: a client that asked
// 192.0.2.53 must get its answer from 192.0.2.53, not from whichever
// address the route picks.

// ownUDP reports whether the server's own UDP loop can serve pc: any real
// UDP socket (a wildcard one too, see above).
func ownUDP(pc net.PacketConn) (*net.UDPConn, bool) {
	u, ok := pc.(*net.UDPConn)
	return u, ok
}

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// oobSize holds one IP_PKTINFO or IPV6_PKTINFO control message (and what
// else a socket option of the caller's might add; a cut-off one is
// ignored).
const oobSize = 128

// serveUDP answers on u with GOMAXPROCS workers until ctx is done (the
// caller closes u to stop them).
func (s *Server) serveUDP(ctx context.Context, u *net.UDPConn) error {
	rc, err := u.SyscallConn()
	if err != nil {
		return fmt.Errorf("dns udp %s: %w", u.LocalAddr(), err)
	}
	pktinfo, err := setPktinfo(rc, u)
	if err != nil {
		return err
	}
	n := runtime.GOMAXPROCS(0)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	workers := make([]*udpWorker, n)
	for i := range n {
		w := newUDPWorker(s, rc, pktinfo)
		workers[i] = w
		wg.Go(func() { errs <- w.run(ctx) })
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil {
			all = append(all, err)
		}
	}
	for i, w := range workers {
		w.logBatches(i)
	}
	return errors.Join(all...)
}

// setPktinfo turns on the destination-address control messages when u is
// bound to a wildcard address, and reports whether it did.
func setPktinfo(rc syscall.RawConn, u *net.UDPConn) (bool, error) {
	la, ok := u.LocalAddr().(*net.UDPAddr)
	if !ok || la.IP != nil && !la.IP.IsUnspecified() {
		return false, nil
	}
	var serr error
	err := rc.Control(func(fd uintptr) {
		domain, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			serr = fmt.Errorf("reading the socket's family: %w", err)
			return
		}
		if domain == unix.AF_INET6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return false, fmt.Errorf("dns udp %s: asking for each query's destination address (needed to answer from it on a wildcard listen address): %w", la, err)
	}
	return true, nil
}

type udpWorker struct {
	s       *Server
	c       *fastCache
	rc      syscall.RawConn
	pktinfo bool

	in    [udpBatch]mmsghdr
	inIov [udpBatch]unix.Iovec
	names [udpBatch]unix.RawSockaddrInet6 // the largest sockaddr a UDP socket reports
	bufs  [udpBatch][]byte
	oob   [udpBatch][oobSize]byte

	out     [udpBatch]mmsghdr
	outIov  [udpBatch]unix.Iovec
	outOob  [udpBatch][48]byte
	outBufs [udpBatch][]byte
	resps   [udpBatch][]byte // what out points at, kept reachable
	outFrom [udpBatch]int    // the query each reply answers

	// The system calls' results, and the calls as values made once (a
	// closure per call would be an allocation per batch).
	got, sent, todo int
	errno           unix.Errno
	readFn, writeFn func(uintptr) bool
	// batches[n] counts the recvmmsg calls that returned n datagrams:
	// how much each wake-up found queued (logged at debug level when the
	// worker stops). Calls that found the socket empty are not counted.
	batches [udpBatch + 1]uint64
}

func newUDPWorker(s *Server, rc syscall.RawConn, pktinfo bool) *udpWorker {
	w := &udpWorker{s: s, c: newFastCache(s), rc: rc, pktinfo: pktinfo}
	for i := range udpBatch {
		w.bufs[i] = make([]byte, udpReadSize)
		w.outBufs[i] = make([]byte, 0, 512)
		w.inIov[i].Base = &w.bufs[i][0]
		w.inIov[i].SetLen(udpReadSize)
		h := &w.in[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&w.names[i]))
		h.Iov = &w.inIov[i]
		h.SetIovlen(1)
		if pktinfo {
			h.Control = &w.oob[i][0]
		}
	}
	w.readFn = w.recv
	w.writeFn = w.send
	return w
}

// recv is one recvmmsg; false means the socket is empty (wait for it).
func (w *udpWorker) recv(fd uintptr) bool {
	for i := range w.in {
		h := &w.in[i].hdr
		h.Namelen = unix.SizeofSockaddrInet6
		if w.pktinfo {
			h.SetControllen(oobSize)
		}
		h.Flags = 0
	}
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&w.in[0])), udpBatch, 0, 0, 0)
	if e == unix.EAGAIN {
		return false
	}
	w.got, w.errno = int(r), e
	return true
}

// send is one sendmmsg of out[sent:todo]; false means the socket's buffer
// is full (wait for room).
func (w *udpWorker) send(fd uintptr) bool {
	r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.out[w.sent])), uintptr(w.todo-w.sent), 0, 0, 0)
	if e == unix.EAGAIN {
		return false
	}
	if e != 0 {
		w.errno = e
		return true
	}
	w.errno = 0
	w.sent += int(r)
	return true
}

func (w *udpWorker) run(ctx context.Context) error {
	for {
		w.got, w.errno = 0, 0
		if err := w.rc.Read(w.readFn); err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dns udp read: %w", err)
		}
		if w.errno != 0 {
			if w.errno != unix.EINTR {
				w.s.log.Debug("dns udp read failed", "err", w.errno)
			}
			continue
		}
		w.batches[min(w.got, udpBatch)]++
		w.todo, w.sent = 0, 0
		for i := range w.got {
			src, ok := sockaddrAddr(&w.names[i], w.in[i].hdr.Namelen)
			if !ok {
				continue
			}
			resp := w.c.respond(w.bufs[i][:w.in[i].n], src, w.outBufs[i])
			if resp == nil {
				continue
			}
			if cap(resp) <= 4096 && cap(resp) > cap(w.outBufs[i]) {
				w.outBufs[i] = resp[:0] // keep the larger buffer for the next round
			}
			j := w.todo
			w.todo++
			w.resps[j], w.outFrom[j] = resp, i
			w.outIov[j].Base = &resp[0]
			w.outIov[j].SetLen(len(resp))
			h := &w.out[j].hdr
			h.Name = (*byte)(unsafe.Pointer(&w.names[i]))
			h.Namelen = w.in[i].hdr.Namelen
			h.Iov = &w.outIov[j]
			h.SetIovlen(1)
			h.Control, h.Controllen = nil, 0
			if w.pktinfo {
				if k := replyOOB(w.oob[i][:w.in[i].hdr.Controllen], &w.outOob[j]); k > 0 {
					h.Control = &w.outOob[j][0]
					h.SetControllen(k)
				}
			}
		}
		for w.sent < w.todo {
			if err := w.rc.Write(w.writeFn); err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return nil
				}
				return fmt.Errorf("dns udp write: %w", err)
			}
			if w.errno != 0 && w.errno != unix.EINTR {
				// The first message failed (e.g. no route to the client):
				// drop it, as miekg/dns drops a failed write.
				i := w.outFrom[w.sent]
				client, _ := sockaddrAddr(&w.names[i], w.in[i].hdr.Namelen)
				w.s.log.Debug("dns udp write failed", "client", client.String(), "err", w.errno)
				w.sent++
			}
		}
		clear(w.resps[:w.todo])
	}
}

// logBatches logs, at debug level, how many datagrams each recvmmsg of
// worker i returned: the batch sizes the load gave it.
func (w *udpWorker) logBatches(i int) {
	if !w.s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	w.s.log.Debug("dns udp worker stopped", "worker", i, "cache_hits", w.c.hits, batchSummary(w.batches[:]))
}

// batchSummary is a log attribute for a batch-size histogram: the calls,
// the datagrams, their mean per call, and "size:calls" for each size seen.
func batchSummary(hist []uint64) slog.Attr {
	var calls, dgrams uint64
	var sizes []string
	for n, c := range hist {
		if c == 0 {
			continue
		}
		calls += c
		dgrams += uint64(n) * c
		sizes = append(sizes, strconv.Itoa(n)+":"+strconv.FormatUint(c, 10))
	}
	mean := 0.0
	if calls > 0 {
		mean = float64(dgrams) / float64(calls)
	}
	return slog.Group("recvmmsg", "calls", calls, "datagrams", dgrams,
		"mean", strconv.FormatFloat(mean, 'f', 2, 64), "sizes", strings.Join(sizes, " "))
}

// sockaddrAddr is the address of a sockaddr_in or sockaddr_in6 the
// kernel wrote (n bytes), as miekg/dns's server would report it: IPv4
// unmapped, an IPv6 scope as its zone.
func sockaddrAddr(sa *unix.RawSockaddrInet6, n uint32) (netip.Addr, bool) {
	switch sa.Family {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.Addr{}, false
		}
		v4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrFrom4(v4.Addr), true
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.Addr{}, false
		}
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && a.Is6() {
			a = a.WithZone(zoneName(sa.Scope_id))
		}
		return a, true
	}
	return netip.Addr{}, false
}

// zoneName is the interface name of an IPv6 scope (its number when the
// interface is gone), as the net package names it.
func zoneName(idx uint32) string {
	if ifi, err := net.InterfaceByIndex(int(idx)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(idx), 10)
}

// cmsgAlign rounds a control message length up as CMSG_ALIGN does.
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}

// queryDst finds the query's destination address in its control
// messages (IP_PKTINFO or IPV6_PKTINFO).
func queryDst(oob []byte) (netip.Addr, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		l, level, typ := cmsgHeader(oob)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return netip.Addr{}, false
		}
		data := oob[unix.SizeofCmsghdr:l]
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= 12:
			return netip.AddrFrom4([4]byte(data[8:12])), true // ipi_addr: the header's destination
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= 20:
			return netip.AddrFrom16([16]byte(data[:16])), true
		}
		if a := cmsgAlign(l); a < len(oob) {
			oob = oob[a:]
		} else {
			break
		}
	}
	return netip.Addr{}, false
}

// replyOOB writes into out the control message that sends a reply from
// the query's destination address, and returns its length (0: none
// found, the kernel picks the source). An IPv4 destination (v4-mapped on
// a dual-stack socket too) gets IP_PKTINFO, an IPv6 one IPV6_PKTINFO,
// both with interface 0: as miekg/dns does.
func replyOOB(oob []byte, out *[48]byte) int {
	dst, ok := queryDst(oob)
	if !ok {
		return 0
	}
	clear(out[:])
	if dst.Is4In6() || dst.Is4() {
		const dataLen = 12 // struct in_pktinfo
		putCmsgHeader(out[:], unix.SizeofCmsghdr+dataLen, unix.IPPROTO_IP, unix.IP_PKTINFO)
		a := dst.Unmap().As4()
		copy(out[unix.SizeofCmsghdr+4:], a[:]) // ipi_spec_dst: the source to use
		return cmsgAlign(unix.SizeofCmsghdr + dataLen)
	}
	const dataLen = 20 // struct in6_pktinfo
	putCmsgHeader(out[:], unix.SizeofCmsghdr+dataLen, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO)
	a := dst.As16()
	copy(out[unix.SizeofCmsghdr:], a[:])
	binary.NativeEndian.PutUint32(out[unix.SizeofCmsghdr+16:], 0) // ipi6_ifindex
	return cmsgAlign(unix.SizeofCmsghdr + dataLen)
}

// cmsgHeader reads a struct cmsghdr (length, level, type) from the start
// of b (len(b) >= SizeofCmsghdr), byte by byte: a control buffer need not
// be aligned for a pointer cast.
func cmsgHeader(b []byte) (l int, level, typ int32) {
	if unix.SizeofCmsghdr == 16 { // size_t cmsg_len is 64 bits
		n := binary.NativeEndian.Uint64(b)
		if n > uint64(len(b)) {
			return -1, 0, 0
		}
		l = int(n)
	} else {
		l = int(binary.NativeEndian.Uint32(b))
	}
	off := unix.SizeofCmsghdr - 8
	return l, int32(binary.NativeEndian.Uint32(b[off:])), int32(binary.NativeEndian.Uint32(b[off+4:]))
}

// putCmsgHeader writes a struct cmsghdr at the start of b.
func putCmsgHeader(b []byte, l int, level, typ int32) {
	if unix.SizeofCmsghdr == 16 {
		binary.NativeEndian.PutUint64(b, uint64(l))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(l))
	}
	off := unix.SizeofCmsghdr - 8
	binary.NativeEndian.PutUint32(b[off:], uint32(level))
	binary.NativeEndian.PutUint32(b[off+4:], uint32(typ))
}
