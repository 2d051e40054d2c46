package proxy

// h2up is the upstream side of HTTP/2 pools (protocol h2c, and h2 over
// TLS): a frame-level client on golang.org/x/net/http2's Framer and hpack
// instead of http.Transport. Each target gets one long-lived multiplexed
// connection (more only when the target's SETTINGS_MAX_CONCURRENT_STREAMS
// is reached). Frames of all streams go into one buffered writer per
// connection, flushed by the connection's flusher goroutine once the
// writers that woke it have run: the HEADERS, DATA and WINDOW_UPDATE
// frames of many calls leave in one write syscall, where http.Transport
// flushes each frame on its own.
//
// The client side stays net/http's HTTP/2 server (which bounds rapid
// reset, CONTINUATION floods and the like); this file only talks to
// upstreams, which are trusted less than nothing but chosen by the
// operator: a protocol error from one closes its connection and fails its
// streams.
//
// Flow control: a stream buffers at most h2StreamWindow bytes of response
// body (its window is given back as the client reads); the connection's
// window is given back as DATA arrives, so that one stream whose client
// does not read holds only its own window, never the connection's, and
// other streams on the connection go on.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/internal/h2meta"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// h2StreamWindow is the receive window of each upstream stream: the
	// most response body bytes buffered per stream.
	h2StreamWindow = 256 << 10
	// h2ConnWindow is the connection's receive window; it is given back
	// as DATA arrives (the streams bound the memory).
	h2ConnWindow = 1 << 30
	// h2MaxStreams caps the streams per upstream connection (a target
	// may announce fewer).
	h2MaxStreams = 1000
	// h2MaxHeaderList bounds a decoded response header block.
	h2MaxHeaderList = 1 << 20
	h2WriteTimeout  = 30 * time.Second
	h2PingAfter     = 30 * time.Second // of silence, as http.Transport's SendPingTimeout
	h2PingTimeout   = 15 * time.Second
	h2IdleTimeout   = 90 * time.Second
	h2BufSize       = 32 << 10
)

// errH2Unused is a request that was never sent on a connection that went
// away (GOAWAY, closed): RoundTrip tries it on another connection.
var errH2Unused = errors.New("http2: stream not processed by upstream")

// H2StreamError is a stream the upstream reset.
type H2StreamError struct{ Code http2.ErrCode }

func (e H2StreamError) Error() string { return "upstream reset the stream: " + e.Code.String() }

// h2Transport is the http.RoundTripper of an HTTP/2 pool.
type h2Transport struct {
	dial          func(ctx context.Context, addr string) (net.Conn, error)
	headerTimeout time.Duration

	mu      sync.Mutex
	conns   map[string][]*h2Conn
	dialing map[string]chan struct{}
	dialErr map[string]error
	closed  bool
}

func newH2Transport(cfg PoolConfig, dialer *net.Dialer, certAsked *atomic.Bool) *h2Transport {
	t := &h2Transport{headerTimeout: cfg.Timeout.Header, conns: map[string][]*h2Conn{},
		dialing: map[string]chan struct{}{}, dialErr: map[string]error{}}
	if cfg.TLS == nil {
		t.dial = func(ctx context.Context, addr string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", addr) }
		return t
	}
	tc := cfg.TLS.Clone()
	tc.NextProtos = []string{"h2"}
	if len(tc.Certificates) == 0 && tc.GetClientCertificate == nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			certAsked.Store(true)
			return &tls.Certificate{}, nil
		}
	}
	t.dial = func(ctx context.Context, addr string) (net.Conn, error) {
		c := tc
		if c.ServerName == "" {
			c = tc.Clone()
			c.ServerName, _, _ = net.SplitHostPort(addr)
		}
		td := &tls.Dialer{NetDialer: dialer, Config: c}
		nc, err := td.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if p := nc.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
			nc.Close()
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("target %s did not negotiate h2 by ALPN (got %q)", addr, p)}
		}
		return nc, nil
	}
	return t
}

// CloseIdleConnections closes the connections without streams (a pool
// being replaced); busy ones close when their last stream ends.
func (t *h2Transport) CloseIdleConnections() {
	t.mu.Lock()
	t.closed = true
	var all []*h2Conn
	for _, cs := range t.conns {
		all = append(all, cs...)
	}
	t.mu.Unlock()
	for _, cc := range all {
		cc.shutdown()
	}
}

// RoundTrip sends req on a connection to req.URL.Host.
func (t *h2Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	for try := 0; ; try++ {
		cc, err := t.conn(req.Context(), req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, err := cc.roundTrip(req, t.headerTimeout)
		if err == errH2Unused && try < 3 {
			continue
		}
		return resp, err
	}
}

// conn returns a connection to addr with a stream reserved on it.
func (t *h2Transport) conn(ctx context.Context, addr string) (*h2Conn, error) {
	for {
		t.mu.Lock()
		for _, cc := range t.conns[addr] {
			if cc.reserve() {
				t.mu.Unlock()
				return cc, nil
			}
		}
		if t.closed {
			t.mu.Unlock()
			return nil, errors.New("http2: upstream pool closed")
		}
		if wait, ok := t.dialing[addr]; ok {
			t.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			t.mu.Lock()
			err := t.dialErr[addr]
			t.mu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		}
		done := make(chan struct{})
		t.dialing[addr] = done
		delete(t.dialErr, addr)
		t.mu.Unlock()
		// One dial per target at a time, not bound to this request's
		// context: others wait on it.
		nc, err := t.dial(context.WithoutCancel(ctx), addr)
		var cc *h2Conn
		if err == nil {
			cc, err = newH2Conn(t, addr, nc)
		}
		t.mu.Lock()
		delete(t.dialing, addr)
		if err != nil {
			t.dialErr[addr] = err
		} else {
			t.conns[addr] = append(t.conns[addr], cc)
		}
		close(done)
		t.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

func (t *h2Transport) forget(cc *h2Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := t.conns[cc.addr]
	for i, c := range cs {
		if c == cc {
			cs = append(cs[:i:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(t.conns, cc.addr)
	} else {
		t.conns[cc.addr] = cs
	}
}

// h2Conn is one upstream HTTP/2 connection.
type h2Conn struct {
	t    *h2Transport
	addr string
	nc   net.Conn
	br   *bufio.Reader

	// The write side: frames of all streams, in order, under wmu.
	wmu  sync.Mutex
	bw   *bufio.Writer
	fr   *http2.Framer // writes under wmu; reads in readLoop only (through mr)
	mr   *h2meta.Reader
	henc *hpack.Encoder
	hbuf bytes.Buffer
	werr error
	kick chan struct{} // wakes the flusher

	mu         sync.Mutex
	cond       *sync.Cond // send windows grew, or the connection ended
	streams    map[uint32]*h2Stream
	nextID     uint32
	maxStreams int
	reserved   int
	sendWin    int64 // the connection's send window
	initWin    int64 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame   uint32
	goaway     bool   // no new streams
	lastOK     uint32 // GOAWAY's last stream id
	err        error  // set when the connection is dead
	idleSince  time.Time
	recvConn   int64 // DATA bytes received since the last connection WINDOW_UPDATE

	lastRead atomic.Int64 // unix nanos of the last frame read
	done     chan struct{}
}

func newH2Conn(t *h2Transport, addr string, nc net.Conn) (*h2Conn, error) {
	cc := &h2Conn{t: t, addr: addr, nc: nc, br: bufio.NewReaderSize(nc, h2BufSize), bw: bufio.NewWriterSize(nc, h2BufSize),
		streams: map[uint32]*h2Stream{}, nextID: 1, maxStreams: h2MaxStreams, sendWin: 65535, initWin: 65535,
		maxFrame: 16384, kick: make(chan struct{}, 1), done: make(chan struct{}), idleSince: time.Now()}
	cc.cond = sync.NewCond(&cc.mu)
	cc.fr = http2.NewFramer(cc.bw, cc.br)
	cc.fr.MaxHeaderListSize = h2MaxHeaderList
	// DATA frames are copied out as they are read (onData): one frame
	// reused; header blocks are decoded into reused storage too.
	cc.fr.SetReuseFrames()
	cc.mr = h2meta.NewReader(cc.fr, cc.br, hpack.NewDecoder(4096, nil))
	cc.henc = hpack.NewEncoder(&cc.hbuf)
	cc.lastRead.Store(time.Now().UnixNano())

	_ = nc.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
	_, err := cc.bw.WriteString(http2.ClientPreface)
	if err == nil {
		err = cc.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList})
	}
	if err == nil {
		err = cc.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	}
	if err == nil {
		err = cc.bw.Flush()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	go cc.readLoop()
	go cc.flusher()
	return cc, nil
}

// reserve books a stream on the connection when it can take one more.
func (cc *h2Conn) reserve() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil || cc.goaway || len(cc.streams)+cc.reserved >= cc.maxStreams || cc.nextID >= math.MaxInt32-2 {
		return false
	}
	cc.reserved++
	return true
}

// kickFlush asks the flusher to write out what is buffered.
func (cc *h2Conn) kickFlush() {
	select {
	case cc.kick <- struct{}{}:
	default:
	}
}

// flusher writes the buffered frames out, once per wake-up however many
// streams added frames meanwhile; it also pings a silent connection and
// closes an idle one.
func (cc *h2Conn) flusher() {
	tick := time.NewTicker(h2PingTimeout)
	defer tick.Stop()
	var pingSent time.Time
	for {
		select {
		case <-cc.done:
			return
		case <-cc.kick:
			// Let the goroutines that are ready add their frames first
			// (the one that woke us ran first): one write for all.
			runtime.Gosched()
			cc.flush()
		case now := <-tick.C:
			silent := now.Sub(time.Unix(0, cc.lastRead.Load()))
			if !pingSent.IsZero() && silent >= now.Sub(pingSent) && now.Sub(pingSent) >= h2PingTimeout {
				cc.fail(errors.New("http2: upstream did not answer a ping"))
				return
			}
			if silent < h2PingAfter {
				pingSent = time.Time{}
			} else if pingSent.IsZero() {
				pingSent = now
				cc.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{'s', 'y'}) })
			}
			cc.mu.Lock()
			idle := len(cc.streams) == 0 && cc.reserved == 0 && now.Sub(cc.idleSince) > h2IdleTimeout
			cc.mu.Unlock()
			if idle {
				cc.shutdown()
			}
		}
	}
}

func (cc *h2Conn) flush() {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if cc.werr != nil || cc.bw.Buffered() == 0 {
		return
	}
	_ = cc.nc.SetWriteDeadline(time.Now().Add(h2WriteTimeout))
	if err := cc.bw.Flush(); err != nil {
		cc.werr = err
		go cc.fail(err)
	}
}

// write appends frames under the write lock and wakes the flusher.
func (cc *h2Conn) write(f func(fr *http2.Framer) error) error {
	cc.wmu.Lock()
	err := cc.werr
	if err == nil {
		if err = f(cc.fr); err != nil {
			cc.werr = err
		}
	}
	cc.wmu.Unlock()
	if err != nil {
		go cc.fail(err)
		return err
	}
	cc.kickFlush()
	return nil
}

// shutdown stops new streams and closes the connection once it has none.
func (cc *h2Conn) shutdown() {
	cc.mu.Lock()
	cc.goaway = true
	idle := len(cc.streams) == 0 && cc.reserved == 0
	cc.mu.Unlock()
	if idle {
		cc.fail(errors.New("http2: upstream connection closed"))
	}
}

// fail ends the connection and every stream on it with err.
func (cc *h2Conn) fail(err error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err = err
	streams := cc.streams
	cc.streams = map[uint32]*h2Stream{}
	cc.cond.Broadcast()
	cc.mu.Unlock()
	close(cc.done)
	cc.nc.Close()
	cc.t.forget(cc)
	for _, s := range streams {
		s.end(err, true)
	}
}

// unindexedRequestHeaders take a new value with every request (the
// gateway sets them): not worth a place in the upstream's HPACK table.
var unindexedRequestHeaders = map[string]bool{"x-request-id": true, "traceparent": true, "grpc-timeout": true}

// forbiddenRequestHeaders are not sent on HTTP/2 (RFC 9113 8.2.2), or
// become pseudo-headers.
var forbiddenRequestHeaders = map[string]bool{"connection": true, "proxy-connection": true, "keep-alive": true,
	"transfer-encoding": true, "upgrade": true, "host": true, "http2-settings": true}

// roundTrip sends req as a new stream (the caller reserved it) and waits
// for the response headers.
func (cc *h2Conn) roundTrip(req *http.Request, headerTimeout time.Duration) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		cc.unreserve()
		return nil, err
	}
	hasBody := req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0
	s := &h2Stream{cc: cc, req: req, respc: make(chan struct{}), sendWin: 0, recvWin: h2StreamWindow}
	s.cond.L = &s.mu

	cc.wmu.Lock()
	cc.mu.Lock()
	cc.reserved--
	if cc.err != nil || cc.goaway || cc.werr != nil {
		cc.mu.Unlock()
		cc.wmu.Unlock()
		return nil, errH2Unused
	}
	s.id = cc.nextID
	cc.nextID += 2
	s.sendWin = cc.initWin
	cc.streams[s.id] = s
	maxFrame := cc.maxFrame
	cc.mu.Unlock()
	cc.hbuf.Reset()
	cc.encodeHeaders(req, hasBody)
	err := cc.writeHeaderBlock(s.id, cc.hbuf.Bytes(), !hasBody, maxFrame)
	if err != nil {
		cc.werr = err
	}
	cc.wmu.Unlock()
	if err != nil {
		go cc.fail(err)
		return nil, err
	}
	cc.kickFlush()
	if hasBody {
		go s.sendBody()
	} else {
		s.mu.Lock()
		s.sentEnd = true
		s.mu.Unlock()
	}

	var timeout <-chan time.Time
	if headerTimeout > 0 {
		tm := time.NewTimer(headerTimeout)
		defer tm.Stop()
		timeout = tm.C
	}
	// The context is watched here while the caller waits for the
	// header, and from the first body Read that waits on (watchCtx): a
	// response read without waiting (a unary gRPC call's, whose header,
	// message and trailers come together) costs no callback on the
	// context. The request body's goroutine needs none of its own: it
	// waits on the client's body (whose reads the proxy aborts when the
	// request ends) or on the windows (which the stream's end wakes); the
	// stream is reset at the latest when the caller reads or closes the
	// response body.
	select {
	case <-s.respc:
	case <-ctx.Done():
		s.cancel(ctx.Err())
		<-s.respc
	case <-timeout:
		s.cancel(&net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}})
		<-s.respc
	}
	s.mu.Lock()
	resp, err, touched := s.resp, s.err, s.touched
	s.mu.Unlock()
	if resp != nil {
		return resp, nil
	}
	if err == errH2Unused && touched {
		// Not processed, but the body is partly gone: not resendable.
		err = io.ErrUnexpectedEOF
	}
	return nil, err
}

// watchCtx resets the stream when its request's context ends, from now
// until the stream finishes; once.
func (s *h2Stream) watchCtx() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watching || s.finished {
		return
	}
	s.watching = true
	ctx := s.req.Context()
	// The callback runs on its own goroutine (at once when ctx is done
	// already): s.mu is not held then.
	s.stopCtx = context.AfterFunc(ctx, func() { s.cancel(ctx.Err()) })
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "timeout awaiting response headers" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (cc *h2Conn) unreserve() {
	cc.mu.Lock()
	cc.reserved--
	cc.mu.Unlock()
}

// encodeHeaders writes req's header block into cc.hbuf (under wmu).
func (cc *h2Conn) encodeHeaders(req *http.Request, hasBody bool) {
	e := cc.henc
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	path := req.URL.RequestURI()
	scheme := req.URL.Scheme
	if scheme == "" {
		scheme = "http"
	}
	_ = e.WriteField(hpack.HeaderField{Name: ":method", Value: req.Method})
	_ = e.WriteField(hpack.HeaderField{Name: ":scheme", Value: scheme})
	_ = e.WriteField(hpack.HeaderField{Name: ":authority", Value: host})
	_ = e.WriteField(hpack.HeaderField{Name: ":path", Value: path})
	for k, vs := range req.Header {
		lk, ok := lowerHeader(k)
		if !ok || forbiddenRequestHeaders[lk] {
			continue
		}
		if lk == "te" {
			// Only "trailers" is allowed (gRPC sends it).
			for _, v := range vs {
				if strings.EqualFold(strings.TrimSpace(v), "trailers") {
					_ = e.WriteField(hpack.HeaderField{Name: "te", Value: "trailers"})
					break
				}
			}
			continue
		}
		if lk == "content-length" {
			continue // written from req.ContentLength
		}
		// Secrets, and the values new with every request (which would
		// only push the reusable fields out of the dynamic table, at
		// the cost of an insertion and an eviction each), are not
		// indexed.
		sensitive := lk == "authorization" || lk == "cookie" || unindexedRequestHeaders[lk]
		for _, v := range vs {
			_ = e.WriteField(hpack.HeaderField{Name: lk, Value: v, Sensitive: sensitive})
		}
	}
	if hasBody && req.ContentLength > 0 {
		_ = e.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(req.ContentLength, 10)})
	}
}

// writeHeaderBlock writes a HEADERS frame and the CONTINUATIONs its
// block needs (under wmu).
func (cc *h2Conn) writeHeaderBlock(id uint32, block []byte, endStream bool, maxFrame uint32) error {
	first := true
	for len(block) > 0 || first {
		chunk := block
		if uint32(len(chunk)) > maxFrame {
			chunk = chunk[:maxFrame]
		}
		block = block[len(chunk):]
		var err error
		if first {
			err = cc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: chunk, EndStream: endStream, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = cc.fr.WriteContinuation(id, len(block) == 0, chunk)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readLoop reads the upstream's frames until the connection fails.
func (cc *h2Conn) readLoop() {
	var err error
	for {
		var f http2.Frame
		f, err = cc.mr.ReadFrame()
		if err != nil {
			// (se in this block: declared outside, errors.As made it
			// escape, an allocation per frame.)
			var se http2.StreamError
			if !errors.As(err, &se) {
				break
			}
			// A malformed frame of one stream (bad header field, zero
			// window increment): that stream is reset, the others go on.
			if s := cc.stream(se.StreamID); s != nil {
				s.reset(se.Code, se, true)
			} else {
				_ = cc.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(se.StreamID, se.Code) })
			}
			continue
		}
		cc.lastRead.Store(time.Now().UnixNano())
		if err = cc.handle(f); err != nil {
			break
		}
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		code := http2.ErrCode(ce)
		_ = cc.write(func(fr *http2.Framer) error { return fr.WriteGoAway(0, code, nil) })
		cc.flush()
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	cc.fail(err)
}

func (cc *h2Conn) stream(id uint32) *h2Stream {
	cc.mu.Lock()
	s := cc.streams[id]
	cc.mu.Unlock()
	return s
}

func (cc *h2Conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		if f.StreamID%2 == 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if s := cc.stream(f.StreamID); s != nil {
			s.onHeaders(f)
		}
	case *http2.DataFrame:
		n := int64(f.Length)
		cc.mu.Lock()
		cc.recvConn += n
		give := cc.recvConn >= h2ConnWindow/2
		if give {
			cc.recvConn = 0
		}
		s := cc.streams[f.StreamID]
		cc.mu.Unlock()
		if give {
			_ = cc.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, h2ConnWindow/2) })
		}
		if s != nil {
			if err := s.onData(f); err != nil {
				return err
			}
		}
	case *http2.RSTStreamFrame:
		if s := cc.stream(f.StreamID); s != nil {
			var err error = H2StreamError{Code: f.ErrCode}
			if f.ErrCode == http2.ErrCodeRefusedStream {
				err = errH2Unused
			}
			s.end(err, true)
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		tableSize := int64(-1)
		err := f.ForeachSetting(func(st http2.Setting) error {
			if err := st.Valid(); err != nil {
				return err
			}
			cc.mu.Lock()
			defer cc.mu.Unlock()
			switch st.ID {
			case http2.SettingHeaderTableSize:
				tableSize = int64(st.Val)
			case http2.SettingMaxFrameSize:
				cc.maxFrame = st.Val
			case http2.SettingMaxConcurrentStreams:
				cc.maxStreams = int(min(st.Val, h2MaxStreams))
			case http2.SettingInitialWindowSize:
				delta := int64(st.Val) - cc.initWin
				cc.initWin = int64(st.Val)
				for _, s := range cc.streams {
					s.mu.Lock()
					s.sendWin += delta
					over := s.sendWin > math.MaxInt32
					s.mu.Unlock()
					if over {
						return http2.ConnectionError(http2.ErrCodeFlowControl)
					}
				}
				cc.cond.Broadcast()
			}
			return nil
		})
		if err != nil {
			return err
		}
		return cc.write(func(fr *http2.Framer) error {
			if tableSize >= 0 {
				cc.henc.SetMaxDynamicTableSizeLimit(uint32(min(tableSize, 4096)))
			}
			return fr.WriteSettingsAck()
		})
	case *http2.WindowUpdateFrame:
		inc := int64(f.Increment)
		cc.mu.Lock()
		defer cc.mu.Unlock()
		if f.StreamID == 0 {
			cc.sendWin += inc
			if cc.sendWin > math.MaxInt32 {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		} else if s := cc.streams[f.StreamID]; s != nil {
			s.mu.Lock()
			s.sendWin += inc
			over := s.sendWin > math.MaxInt32
			s.mu.Unlock()
			if over {
				go s.reset(http2.ErrCodeFlowControl, errors.New("http2: upstream overflowed the stream's window"), true)
			}
		}
		cc.cond.Broadcast()
	case *http2.PingFrame:
		if !f.IsAck() {
			data := f.Data
			return cc.write(func(fr *http2.Framer) error { return fr.WritePing(true, data) })
		}
	case *http2.GoAwayFrame:
		cc.mu.Lock()
		cc.goaway = true
		cc.lastOK = f.LastStreamID
		var unsent []*h2Stream
		for id, s := range cc.streams {
			if id > f.LastStreamID {
				unsent = append(unsent, s)
			}
		}
		idle := len(cc.streams) == len(unsent) && cc.reserved == 0
		cc.mu.Unlock()
		for _, s := range unsent {
			s.end(errH2Unused, true)
		}
		if idle {
			return errors.New("http2: upstream sent GOAWAY")
		}
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // push is disabled
	}
	return nil
}

// removeStream forgets a finished stream; a draining connection with no
// streams left closes.
func (cc *h2Conn) removeStream(id uint32) {
	cc.mu.Lock()
	delete(cc.streams, id)
	last := len(cc.streams) == 0 && cc.reserved == 0
	if last {
		cc.idleSince = time.Now()
	}
	closing := last && cc.goaway && cc.err == nil
	cc.mu.Unlock()
	if closing {
		cc.fail(errors.New("http2: upstream connection drained"))
	}
}

// h2Stream is one request and its response.
type h2Stream struct {
	cc      *h2Conn
	id      uint32
	req     *http.Request
	stopCtx func() bool

	mu       sync.Mutex
	watching bool      // stopCtx is set (watchCtx)
	readData bool      // a body Read returned data
	cond     sync.Cond // body data, end, or window (L is &mu)
	respc    chan struct{}
	resp     *http.Response
	gotResp  bool
	buf      []byte // response body received; buf[off:] not yet read
	off      int
	touched  bool  // sendBody began reading the request body
	recvWin  int64 // our window left for the stream
	unacked  int64 // bytes read since the last stream WINDOW_UPDATE
	sendWin  int64
	sentEnd  bool  // END_STREAM (or RST) sent
	recvEnd  bool  // END_STREAM received
	err      error // the stream ended with it (nil: cleanly, when recvEnd)
	upErr    error // the upstream failed the stream after its headers
	closed   bool  // the body was closed by the reader
	finished bool  // removed from the connection
	// The received trailer fields (copied: the frame's are reused),
	// moved into resp.Trailer at EOF; trailerArr backs most.
	trailer    []hpack.HeaderField
	trailerArr [4]hpack.HeaderField
}

// fieldsHeader adds fields to h (a new one when nil). The first values of
// the keys share one backing array (capped: an append copies), as
// net/http's readers do: a response's header block costs two
// allocations, not one per field.
func fieldsHeader(h http.Header, fields []hpack.HeaderField) http.Header {
	if h == nil {
		h = make(http.Header, len(fields))
	}
	vals := make([]string, 0, len(fields))
	for _, hf := range fields {
		k := canonicalResponseKey(hf.Name)
		if vv := h[k]; vv != nil {
			h[k] = append(vv, hf.Value)
			continue
		}
		vals = append(vals, hf.Value)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return h
}

// grpcResponseKeys are gRPC's response fields, which
// http.CanonicalHeaderKey does not know and allocates for.
var grpcResponseKeys = map[string]string{"grpc-status": "Grpc-Status", "grpc-message": "Grpc-Message",
	"grpc-encoding": "Grpc-Encoding", "grpc-accept-encoding": "Grpc-Accept-Encoding",
	"grpc-status-details-bin": "Grpc-Status-Details-Bin"}

func canonicalResponseKey(name string) string {
	if k, ok := grpcResponseKeys[name]; ok {
		return k
	}
	return http.CanonicalHeaderKey(name)
}

// statusLine is http.Response's Status for code ("200 OK").
func statusLine(code int) string {
	if code == http.StatusOK {
		return "200 OK"
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

func (s *h2Stream) onHeaders(f *http2.MetaHeadersFrame) {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	if f.Truncated {
		// Fields past h2MaxHeaderList were dropped: a response or
		// trailers short of what was sent (a gRPC status among the
		// dropped) is no answer to pass on.
		s.mu.Unlock()
		s.reset(http2.ErrCodeProtocol, errors.New("http2: upstream sent a header list over the limit"), true)
		return
	}
	if !s.gotResp {
		status, err := strconv.Atoi(f.PseudoValue("status"))
		if err != nil || status < 100 || status > 999 {
			s.mu.Unlock()
			s.reset(http2.ErrCodeProtocol, errors.New("http2: upstream sent a response without a valid :status"), true)
			return
		}
		if status < 200 {
			s.mu.Unlock() // 1xx: skip
			return
		}
		h := fieldsHeader(nil, f.RegularFields())
		cl := int64(-1)
		if v := h.Get("Content-Length"); v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				cl = n
			}
		}
		s.resp = &http.Response{Status: statusLine(status), StatusCode: status,
			Proto: "HTTP/2.0", ProtoMajor: 2, Header: h, Trailer: http.Header{}, ContentLength: cl, Request: s.req,
			Body: &h2Body{s: s, grpc: strings.HasPrefix(h.Get("Content-Type"), "application/grpc")}}
		s.gotResp = true
		if f.StreamEnded() {
			s.recvEnd = true
		}
		close(s.respc)
		done := s.recvEnd && s.sentEnd
		s.mu.Unlock()
		if done {
			s.finish()
		}
		return
	}
	// Trailers.
	if s.recvEnd {
		s.mu.Unlock()
		s.reset(http2.ErrCodeStreamClosed, errAfterEndStream, true)
		return
	}
	if !f.StreamEnded() {
		s.mu.Unlock()
		s.reset(http2.ErrCodeProtocol, errors.New("http2: upstream sent a second header block without END_STREAM"), true)
		return
	}
	// Kept aside: the response's Trailer map belongs to the body's
	// reader, who gets them at EOF (as http.Transport's contract says);
	// writing it here raced with a caller reading it meanwhile.
	if s.trailer == nil {
		s.trailer = s.trailerArr[:0]
	}
	s.trailer = append(s.trailer, f.RegularFields()...)
	s.recvEnd = true
	s.cond.Broadcast()
	done := s.sentEnd
	s.mu.Unlock()
	if done {
		s.finish()
	}
}

// errAfterEndStream: the upstream sent a frame on a stream after its
// END_STREAM.
var errAfterEndStream = errors.New("http2: upstream sent a frame after END_STREAM")

func (s *h2Stream) onData(f *http2.DataFrame) error {
	n := int64(f.Length)
	s.mu.Lock()
	if s.finished || s.closed {
		s.mu.Unlock()
		return nil
	}
	if !s.gotResp {
		s.mu.Unlock()
		s.reset(http2.ErrCodeProtocol, errors.New("http2: upstream sent DATA before the response headers"), true)
		return nil
	}
	if s.recvEnd {
		// Half-closed (remote), the request body still going up: what
		// was received stays the response (RFC 9113 5.1).
		s.mu.Unlock()
		s.reset(http2.ErrCodeStreamClosed, errAfterEndStream, true)
		return nil
	}
	if n > s.recvWin {
		s.mu.Unlock()
		s.reset(http2.ErrCodeFlowControl, errors.New("http2: upstream overran the stream's window"), true)
		return nil
	}
	s.recvWin -= n
	// Padding counts against the window but is never read: give it back
	// when the data is.
	s.unacked += n - int64(len(f.Data()))
	if s.off > 0 && s.off == len(s.buf) {
		s.buf, s.off = s.buf[:0], 0
	} else if s.off > len(s.buf)/2 {
		s.buf, s.off = s.buf[:copy(s.buf, s.buf[s.off:])], 0
	}
	s.buf = append(s.buf, f.Data()...)
	if f.StreamEnded() {
		s.recvEnd = true
	}
	s.cond.Broadcast()
	done := s.recvEnd && s.sentEnd
	s.mu.Unlock()
	if done {
		s.finish()
	}
	return nil
}

// end fails the stream with err (the connection failed, or the peer reset
// it); the reader sees err after what was received, unless the response
// had already ended.
func (s *h2Stream) end(err error, upstream bool) {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	if s.err == nil && !s.recvEnd {
		s.err = err
		if s.gotResp && upstream {
			s.upErr = err
		}
	}
	s.sentEnd = true
	s.cond.Broadcast()
	if !s.gotResp {
		s.gotResp = true
		close(s.respc)
	}
	s.mu.Unlock()
	s.finish()
}

// reset sends RST_STREAM with code and ends the stream with err;
// upstream says the upstream is at fault (a protocol violation).
func (s *h2Stream) reset(code http2.ErrCode, err error, upstream bool) {
	s.mu.Lock()
	send := !s.finished && !(s.sentEnd && s.recvEnd)
	s.mu.Unlock()
	if send {
		_ = s.cc.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(s.id, code) })
	}
	s.end(err, upstream)
}

// cancel is the request's context ending: the upstream's stream is reset.
func (s *h2Stream) cancel(err error) { s.reset(http2.ErrCodeCancel, err, false) }

// finish removes the stream from its connection, once.
func (s *h2Stream) finish() {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.finished = true
	s.cond.Broadcast()
	stop := s.stopCtx
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	s.cc.removeStream(s.id)
	s.cc.mu.Lock()
	s.cc.cond.Broadcast() // a body sender waiting on the window
	s.cc.mu.Unlock()
}

// sendBody copies the request body upstream as DATA frames, within the
// stream's and the connection's send windows.
func (s *h2Stream) sendBody() {
	cc := s.cc
	bp := h2BufPool.Get().(*[]byte)
	defer h2BufPool.Put(bp)
	buf := *bp
	body := s.req.Body
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.touched = true
	s.mu.Unlock()
	for {
		n, rerr := body.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			k, err := s.awaitWindow(len(data))
			if err != nil {
				return
			}
			chunk := data[:k]
			if err := cc.write(func(fr *http2.Framer) error { return fr.WriteData(s.id, false, chunk) }); err != nil {
				return
			}
			data = data[k:]
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			s.reset(http2.ErrCodeCancel, rerr, false)
			return
		}
	}
	s.mu.Lock()
	if s.finished || s.sentEnd {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	trailer := s.req.Trailer
	err := cc.write(func(fr *http2.Framer) error {
		if len(trailer) == 0 {
			return fr.WriteData(s.id, true, nil)
		}
		cc.hbuf.Reset()
		for k, vs := range trailer {
			lk, ok := lowerHeader(k)
			if !ok {
				continue
			}
			for _, v := range vs {
				_ = cc.henc.WriteField(hpack.HeaderField{Name: lk, Value: v})
			}
		}
		cc.mu.Lock()
		mf := cc.maxFrame
		cc.mu.Unlock()
		return cc.writeHeaderBlock(s.id, cc.hbuf.Bytes(), true, mf)
	})
	if err != nil {
		return
	}
	s.mu.Lock()
	s.sentEnd = true
	done := s.recvEnd
	s.mu.Unlock()
	if done {
		s.finish()
	}
}

// awaitWindow waits until the stream may send up to want bytes, and takes
// them from both windows.
func (s *h2Stream) awaitWindow(want int) (int, error) {
	cc := s.cc
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for {
		if cc.err != nil {
			return 0, cc.err
		}
		s.mu.Lock()
		if s.finished || s.sentEnd {
			s.mu.Unlock()
			return 0, errors.New("http2: stream ended")
		}
		k := min(int64(want), s.sendWin, cc.sendWin, int64(cc.maxFrame))
		if k > 0 {
			s.sendWin -= k
			cc.sendWin -= k
			s.mu.Unlock()
			return int(k), nil
		}
		s.mu.Unlock()
		cc.cond.Wait()
	}
}

var h2BufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// h2Body is a response body.
type h2Body struct {
	s    *h2Stream
	grpc bool // a gRPC response (Content-Type application/grpc...)
}

func (b *h2Body) Read(p []byte) (int, error) {
	s := b.s
	s.mu.Lock()
	if !s.watching && !s.finished && !s.recvEnd && s.off < len(s.buf) {
		// Not watched yet and not about to wait: the context is
		// checked here (no allocation), else a response whose reads
		// all find data (a stream read at a slow client's pace) went
		// on past its cancel or the gateway's timeout.
		if err := s.req.Context().Err(); err != nil {
			s.mu.Unlock()
			s.cancel(err)
			s.mu.Lock()
		}
	}
	for s.off == len(s.buf) && !s.recvEnd && s.err == nil && !s.closed {
		if !s.watching && !s.finished {
			// Waiting: the request's context must be able to end it.
			s.mu.Unlock()
			s.watchCtx()
			s.mu.Lock()
			continue
		}
		s.cond.Wait()
	}
	if s.off == len(s.buf) {
		err := s.err
		s.moveTrailer()
		switch {
		case s.closed:
			err = errors.New("http2: response body closed")
		case s.upErr != nil && b.grpc:
			// A gRPC response the upstream broke off ends with the
			// status a client can act on (UNAVAILABLE when the
			// connection went away), rather than a reset stream.
			s.resp.Trailer.Set("Grpc-Status", strconv.Itoa(grpcCodeOf(s.upErr)))
			s.resp.Trailer.Set("Grpc-Message", "switchyard: upstream "+s.cc.addr+" failed the call: "+s.upErr.Error())
			err = nil
		}
		s.mu.Unlock()
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	n := copy(p, s.buf[s.off:])
	s.off += n
	if s.off == len(s.buf) {
		s.buf, s.off = s.buf[:0], 0
	}
	s.unacked += int64(n)
	var give int64
	if !s.recvEnd && s.unacked >= h2StreamWindow/4 {
		give = s.unacked
		s.unacked = 0
		s.recvWin += give
	}
	// A second read of data with more to come: a stream, whose caller
	// may block between reads (writing to a slow client) when the
	// context ends; watched from now (a unary call's second Read is at
	// its end, or waits and is watched then).
	watch := !s.watching && !s.recvEnd && s.readData
	s.readData = true
	s.mu.Unlock()
	if watch {
		s.watchCtx()
	}
	if give > 0 {
		id := s.id
		_ = s.cc.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(id, uint32(give)) })
	}
	return n, nil
}

// moveTrailer sets the received trailer fields in resp.Trailer (a key's
// values replace what it held), the first values of the keys in one
// backing array. (s.mu)
func (s *h2Stream) moveTrailer() {
	fields := s.trailer
	if len(fields) == 0 {
		return
	}
	vals := make([]string, 0, len(fields))
	for i, hf := range fields {
		k := canonicalResponseKey(hf.Name)
		if sameName(fields[:i], hf.Name) {
			s.resp.Trailer[k] = append(s.resp.Trailer[k], hf.Value)
			continue
		}
		vals = append(vals, hf.Value)
		s.resp.Trailer[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	clear(fields)
	s.trailer = nil
}

// sameName tells whether a field of fs is named name (wire names are
// lower case: one name per canonical key).
func sameName(fs []hpack.HeaderField, name string) bool {
	for _, f := range fs {
		if f.Name == name {
			return true
		}
	}
	return false
}

// ready reports whether Read would return at once: data, the end of the
// body or its error is there.
func (b *h2Body) ready() bool {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.off < len(s.buf) || s.recvEnd || s.err != nil || s.closed
}

// upstreamErr is the error that ended the stream after its headers.
func (b *h2Body) upstreamErr() error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	return b.s.upErr
}

func (b *h2Body) Close() error {
	s := b.s
	s.mu.Lock()
	s.closed = true
	s.buf = nil
	ended := s.recvEnd && s.err == nil
	sent := s.sentEnd
	s.cond.Broadcast()
	s.mu.Unlock()
	if !ended || !sent {
		// The upstream is told to stop: the response was not read to
		// its end, or the request was still being sent.
		s.reset(http2.ErrCodeCancel, errors.New("http2: response body closed"), false)
	} else {
		s.end(nil, false)
	}
	return nil
}

// grpcCodeOf maps an upstream failure to a gRPC status code (gRPC's
// PROTOCOL-HTTP2.md mapping of RST_STREAM codes; a lost connection is
// UNAVAILABLE).
func grpcCodeOf(err error) int {
	var se H2StreamError
	if errors.As(err, &se) {
		switch se.Code {
		case http2.ErrCodeRefusedStream:
			return 14 // UNAVAILABLE
		case http2.ErrCodeCancel:
			return 1 // CANCELLED
		case http2.ErrCodeEnhanceYourCalm:
			return 8 // RESOURCE_EXHAUSTED
		case http2.ErrCodeInadequateSecurity:
			return 7 // PERMISSION_DENIED
		}
		return 13 // INTERNAL
	}
	return 14 // UNAVAILABLE
}

// grpcSplit sends gRPC calls to the frame-level HTTP/2 transport and
// other requests to http.Transport.
type grpcSplit struct {
	grpc  *h2Transport
	other http.RoundTripper
}

func (g grpcSplit) RoundTrip(req *http.Request) (*http.Response, error) {
	if httpx.IsGRPC(req) && req.Header.Get("Upgrade") == "" {
		return g.grpc.RoundTrip(req)
	}
	return g.other.RoundTrip(req)
}

// commonLower holds the lower-case forms of the usual field names, so
// that the common case costs no allocation.
var commonLower = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Content-Encoding", "Content-Type", "Cookie", "Grpc-Accept-Encoding", "Grpc-Encoding", "Grpc-Timeout",
		"Grpc-Message", "Grpc-Status", "Te", "Traceparent", "Tracestate", "User-Agent", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id", "Forwarded", "Origin", "Referer"} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

// lowerHeader is an HTTP/2 field name (lower case); ok is false for a
// name that is not a valid token.
func lowerHeader(k string) (string, bool) {
	if v, ok := commonLower[k]; ok {
		return v, true
	}
	if !httpguts.ValidHeaderFieldName(k) {
		return "", false
	}
	return strings.ToLower(k), true
}
