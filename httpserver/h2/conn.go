package h2

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/internal/h2meta"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const maxWindow = 1<<31 - 1

var (
	errStreamClosed       = errors.New("h2: stream closed")
	errConnClosed         = errors.New("h2: connection closed")
	errBodyTimeout  error = bodyTimeoutError{}
)

// bodyTimeoutError is a body read's timeout (ReadBodyTimeout or the
// handler's SetReadDeadline): os.ErrDeadlineExceeded to errors.Is, and a
// net.Error timeout, as net/http's.
type bodyTimeoutError struct{}

func (bodyTimeoutError) Error() string        { return "h2: request body read timeout" }
func (bodyTimeoutError) Timeout() bool        { return true }
func (bodyTimeoutError) Temporary() bool      { return true }
func (bodyTimeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// conn is one HTTP/2 connection.
type conn struct {
	srv        *Server
	nc         net.Conn
	fr         *http2.Framer
	mr         *h2meta.Reader // reads fr's frames, header blocks into reused storage
	baseCtx    context.Context
	cancelCtx  context.CancelFunc
	remoteAddr string
	tls        *tls.ConnectionState

	// writing: wmu guards the framer's write half, bw (from writerPool
	// while frames are written), henc, hbuf.
	wmu         sync.Mutex
	writers     atomic.Int32 // writers waiting for wmu
	flushQueued bool         // a flushLater is on its way
	bw          *bufio.Writer
	henc        *hpack.Encoder
	hbuf        bytes.Buffer
	werr        error
	wdeadlineAt time.Time // the write deadline set is a whole timeout away before this

	// mu guards what follows and the streams' shared fields.
	mu             sync.Mutex
	streams        map[uint32]*stream
	maxSeen        uint32 // highest client stream id seen
	running        int    // handlers running (streams reset by the client too)
	queue          []*stream
	sendWindow     int64 // the peer's connection window for our DATA
	peerInitWindow int32
	peerMaxFrame   uint32
	flowCh         chan struct{} // closed when a send window grows or the conn closes
	recvWindow     int64         // bytes the client may still send on the connection
	recvUnacked    int64         // consumed bytes not yet returned by WINDOW_UPDATE
	goneAway       bool          // GOAWAY sent: no new streams
	closed         bool
	lastStreamID   uint32 // in our GOAWAY
	resetsAt       time.Time
	resets         int  // resets of open streams since resetsAt, the client's and those it provoked
	resetFlood     bool // streamError counted more than MaxResetsPerSecond (set and read by the reader only)
	idleTimer      *time.Timer
	sawSettings    bool
	ourResets      []uint32 // the last streams we reset (ring, 2 x MaxConcurrentStreams): the client's frames already sent on them are ignored
	ourResetsNext  int
	idleWorkers    int          // workers waiting on work
	work           chan *stream // streams handed to idle workers
}

// noteResetLocked records that we reset stream id. (mu)
func (c *conn) noteResetLocked(id uint32) {
	if c.ourResets == nil {
		// As many as can be in flight: every stream the client may
		// have open, answered early, twice over.
		c.ourResets = make([]uint32, max(32, 2*int(c.srv.maxStreams())))
	}
	c.ourResets[c.ourResetsNext] = id
	c.ourResetsNext = (c.ourResetsNext + 1) % len(c.ourResets)
}

// weResetLocked tells whether we reset stream id lately. (mu)
func (c *conn) weResetLocked(id uint32) bool {
	for _, r := range c.ourResets {
		if r == id && id != 0 {
			return true
		}
	}
	return false
}

func newConn(s *Server, nc net.Conn, br *bufio.Reader, ts *tls.ConnectionState) *conn {
	c := &conn{
		srv: s, nc: nc, tls: ts, remoteAddr: nc.RemoteAddr().String(),
		streams: map[uint32]*stream{}, sendWindow: 65535, peerInitWindow: 65535,
		peerMaxFrame: 16384, flowCh: make(chan struct{}), work: make(chan *stream, maxIdleWorkers),
	}
	c.fr = http2.NewFramer(connWriter{c}, br)
	c.fr.SetMaxReadFrameSize(16384)
	c.fr.MaxHeaderListSize = s.maxHeaderBytes()
	c.fr.SetReuseFrames()
	c.mr = h2meta.NewReader(c.fr, br, hpack.NewDecoder(4096, nil))
	c.henc = hpack.NewEncoder(&c.hbuf)
	ctx := context.WithValue(context.Background(), http.ServerContextKey, s.hs)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, nc.LocalAddr())
	c.baseCtx, c.cancelCtx = context.WithCancel(ctx)
	c.recvWindow = int64(s.connWindow())
	return c
}

// connError is a connection error to send as GOAWAY.
type connError struct {
	code http2.ErrCode
	why  string
}

func (e connError) Error() string { return "h2: connection error " + e.code.String() + ": " + e.why }

func (c *conn) serve(readHeader time.Duration) {
	defer c.teardown()
	// Our SETTINGS and connection window.
	err := c.write(func() error {
		if err := c.fr.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.srv.maxStreams()},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.srv.streamWindow())},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.srv.maxHeaderBytes()},
		); err != nil {
			return err
		}
		if inc := c.srv.connWindow() - 65535; inc > 0 {
			return c.fr.WriteWindowUpdate(0, uint32(inc))
		}
		return nil
	})
	if err != nil {
		return
	}
	if c.srv.IdleTimeout > 0 {
		c.idleTimer = time.AfterFunc(c.srv.IdleTimeout, c.onIdle)
	}
	for {
		f, err := c.mr.ReadFrame()
		if err == nil {
			if !c.sawSettings {
				sf, ok := f.(*http2.SettingsFrame)
				if !ok || sf.IsAck() {
					c.fail(connError{http2.ErrCodeProtocol, "first frame is not SETTINGS"})
					return
				}
				c.sawSettings = true
				_ = c.nc.SetReadDeadline(time.Time{})
			}
			err = c.process(f)
			if err == nil {
				if err = c.resetFloodError(); err == nil {
					continue
				}
			}
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			if se.Cause != nil && se.StreamID%2 == 1 {
				// A malformed header block (the framer's only
				// stream errors with a cause): its stream was opened
				// and is closed now, its id not to be used again.
				c.mu.Lock()
				c.maxSeen = max(c.maxSeen, se.StreamID)
				c.mu.Unlock()
			}
			c.streamError(se.StreamID, se.Code)
			if err = c.resetFloodError(); err == nil {
				continue
			}
		}
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			c.fail(connError{http2.ErrCode(ce), "framing"})
			return
		}
		var cerr connError
		if errors.As(err, &cerr) {
			c.fail(cerr)
			return
		}
		if errors.Is(err, http2.ErrFrameTooLarge) {
			c.fail(connError{http2.ErrCodeFrameSize, "frame too large"})
			return
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.srv.logf("h2: reading", "remote", c.remoteAddr, "err", err)
		}
		return
	}
}

// resetFloodError is the connection error of a client that provoked
// more resets of open streams than MaxResetsPerSecond.
func (c *conn) resetFloodError() error {
	if c.resetFlood {
		return connError{http2.ErrCodeEnhanceYourCalm, "too many stream errors on open streams"}
	}
	return nil
}

// fail sends GOAWAY with e's code and closes the connection.
func (c *conn) fail(e connError) {
	c.srv.logf("h2: closing connection", "remote", c.remoteAddr, "err", e.Error())
	c.mu.Lock()
	last := c.maxSeen
	c.goneAway = true
	c.mu.Unlock()
	_ = c.writeFlush(func() error { return c.fr.WriteGoAway(last, e.code, nil) })
	c.lingerClose()
}

// lingerLimit and lingerTime bound what fail reads and drops after its
// GOAWAY, so that the client's frames still in flight do not make the
// kernel answer them with a reset that can overtake the GOAWAY.
const (
	lingerLimit = 64 << 10
	lingerTime  = 500 * time.Millisecond
)

// lingerClose ends the write half (the GOAWAY is the last thing the
// client reads), drops what the client still sends for a moment, and
// closes: closed with unread bytes, the connection is reset and the
// client may lose the GOAWAY that says why.
func (c *conn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = c.nc.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, c.nc, lingerLimit)
	}
	c.nc.Close()
}

// testHookTeardown, set by tests, sees each connection as its reader
// stops (the connection window's invariant is checked there).
var testHookTeardown atomic.Pointer[func(*conn)]

// teardown ends every stream once the reader stops.
func (c *conn) teardown() {
	if h := testHookTeardown.Load(); h != nil {
		(*h)(c)
	}
	c.nc.Close()
	c.cancelCtx()
	c.mu.Lock()
	c.closed = true
	close(c.flowCh)
	for id, st := range c.streams {
		st.closeRemote(errConnClosed)
		st.reset = true
		st.cancel()
		delete(c.streams, id)
	}
	c.queue = nil
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.mu.Unlock()
}

// onIdle closes a connection without streams.
func (c *conn) onIdle() {
	c.mu.Lock()
	idle := len(c.streams) == 0 && c.running == 0 && !c.closed
	c.mu.Unlock()
	if idle {
		c.goAway()
	}
}

// goAway sends GOAWAY NO_ERROR: no new streams; the connection closes
// when the running ones are done.
func (c *conn) goAway() {
	c.mu.Lock()
	if c.goneAway || c.closed {
		c.mu.Unlock()
		return
	}
	c.goneAway = true
	c.lastStreamID = c.maxSeen
	done := len(c.streams) == 0 && c.running == 0
	last := c.maxSeen
	c.mu.Unlock()
	_ = c.writeFlush(func() error { return c.fr.WriteGoAway(last, http2.ErrCodeNo, nil) })
	if done {
		c.closeWrite()
	}
}

// closeWrite closes the connection after GOAWAY, once the last stream
// ended: the client's pending frames are drained briefly so that it reads
// our last frames rather than a reset.
func (c *conn) closeWrite() {
	// What earlier writers left in the buffer (the last stream's frames,
	// waiting for flushLater) leaves before the FIN.
	_ = c.writeFlush(func() error { return nil })
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok { // TCP, TLS
		_ = cw.CloseWrite()
		_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
		return
	}
	c.nc.Close()
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// connWriter is the framer's writer: the connection's buffer of the
// moment. (wmu)
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) { return w.c.bw.Write(p) }

// write runs fn (which writes frames) under the write lock; the frames
// leave in the flush that follows (flushLater).
func (c *conn) write(fn func() error) error { return c.writeMode(fn, false) }

// writeFlush is write that flushes at once: for the last frames before
// the connection closes (GOAWAY), which a later flush would find the
// connection closed under it.
func (c *conn) writeFlush(fn func() error) error { return c.writeMode(fn, true) }

func (c *conn) writeMode(fn func() error, flush bool) error {
	c.writers.Add(1)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writers.Add(-1)
	if c.werr != nil {
		return c.werr
	}
	c.renewWriteDeadline()
	if c.bw == nil {
		c.bw = writerPool.Get().(*bufio.Writer)
		c.bw.Reset(c.nc)
	}
	err := fn()
	if err == nil && flush {
		err = c.flushLocked()
	} else if err == nil && !c.flushQueued {
		c.flushQueued = true
		go c.flushLater()
	}
	if err != nil {
		c.werr = err
		c.nc.Close()
	}
	return err
}

// flushLater writes out what the writers buffered, once the goroutines
// ready to run have run: the frames of the streams whose responses became
// ready together (a proxy's handlers woken by one read from the upstream)
// leave in one write, where a flush per writer made a write syscall per
// response. A writer's frames leave at the latest when the writers that
// were ready with it have written theirs; Flush (SSE, streaming) is not
// held longer than that.
func (c *conn) flushLater() {
	runtime.Gosched()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.flushQueued = false
	if c.werr != nil || c.bw == nil {
		return
	}
	c.renewWriteDeadline()
	if err := c.flushLocked(); err != nil {
		c.werr = err
		c.nc.Close()
	}
}

// flushLocked writes out the buffer; an idle connection gives it back.
// (wmu)
func (c *conn) flushLocked() error {
	if err := c.bw.Flush(); err != nil {
		return err
	}
	if c.writers.Load() == 0 && !c.flushQueued {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
	return nil
}

func (c *conn) renewWriteDeadline() {
	t := c.srv.WriteTimeout
	if t <= 0 {
		return
	}
	now := time.Now()
	if now.Before(c.wdeadlineAt) {
		return
	}
	c.wdeadlineAt = now.Add(t / 8)
	_ = c.nc.SetWriteDeadline(now.Add(t + t/8))
}

// streamError resets stream id with code: the client's error (it is
// called by the reader only). Resetting an open stream cancels its
// handler as the client's RST_STREAM does, and counts as one against
// MaxResetsPerSecond (CVE-2025-8671, "MadeYouReset"): beyond, the reader
// closes the connection (resetFlood).
func (c *conn) streamError(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	c.noteResetLocked(id)
	if st := c.streams[id]; st != nil {
		c.endStreamLocked(st, errStreamClosed)
		if c.countResetLocked() {
			c.resetFlood = true
		}
	}
	c.mu.Unlock()
	_ = c.write(func() error { return c.fr.WriteRSTStream(id, code) })
}

// countResetLocked counts a reset of an open stream, by the client or
// provoked by it; true beyond MaxResetsPerSecond. (mu)
func (c *conn) countResetLocked() bool {
	now := time.Now()
	if now.Sub(c.resetsAt) > time.Second {
		c.resetsAt, c.resets = now, 0
	}
	c.resets++
	return c.resets > c.srv.maxResets()
}

// endStreamLocked removes st: its body ends with err, its context is
// cancelled, unread body bytes return to the connection window.
func (c *conn) endStreamLocked(st *stream, err error) {
	if _, ok := c.streams[st.id]; !ok {
		return
	}
	delete(c.streams, st.id)
	st.reset = true
	st.closeRemote(err)
	if n := int64(len(st.buf) - st.off); n > 0 {
		c.recvUnacked += n
	}
	st.buf, st.off = nil, 0
	st.cancel()
	c.streamsChangedLocked()
}

func (c *conn) streamsChangedLocked() {
	if len(c.streams) == 0 && c.running == 0 {
		if c.goneAway && !c.closed {
			go c.closeWrite()
		} else if c.idleTimer != nil && !c.closed {
			// (A closed connection's timer stays stopped: its closure
			// would keep the connection for IdleTimeout.)
			c.idleTimer.Reset(c.srv.IdleTimeout)
		}
	}
}

func (c *conn) process(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.processHeaders(f)
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.SettingsFrame:
		return c.processSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		data := f.Data
		return c.write(func() error { return c.fr.WritePing(true, data) })
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.processReset(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			c.streamError(f.StreamID, http2.ErrCodeProtocol)
		}
		return nil
	case *http2.GoAwayFrame:
		return nil
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, "PUSH_PROMISE from a client"}
	case *http2.ContinuationFrame:
		return connError{http2.ErrCodeProtocol, "stray CONTINUATION"}
	default:
		return nil // unknown frame types are ignored
	}
}

func (c *conn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	if err := f.ForeachSetting(func(s http2.Setting) error { return s.Valid() }); err != nil {
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			return connError{http2.ErrCode(ce), "invalid SETTINGS"}
		}
		return err
	}
	var tableSize, minTable uint32
	hasTable := false
	// INITIAL_WINDOW_SIZE is applied once per frame (its last value; the
	// largest one for the overflow check, which applying them in turn
	// would have met): a frame of thousands of them costs one pass over
	// the streams, not one per entry.
	var initWindow, maxInit uint32
	hasInit := false
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			initWindow, maxInit, hasInit = s.Val, max(maxInit, s.Val), true
		case http2.SettingMaxFrameSize:
			c.mu.Lock()
			c.peerMaxFrame = s.Val
			c.mu.Unlock()
		case http2.SettingHeaderTableSize:
			if !hasTable || s.Val < minTable {
				minTable = s.Val
			}
			tableSize, hasTable = s.Val, true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if hasInit {
		c.mu.Lock()
		var most int64
		for _, st := range c.streams {
			most = max(most, st.sendWindow)
		}
		if len(c.streams) > 0 && most+int64(maxInit)-int64(c.peerInitWindow) > maxWindow {
			c.mu.Unlock()
			return connError{http2.ErrCodeFlowControl, "INITIAL_WINDOW_SIZE overflows a stream window"}
		}
		delta := int64(initWindow) - int64(c.peerInitWindow)
		c.peerInitWindow = int32(initWindow)
		for _, st := range c.streams {
			st.sendWindow += delta
		}
		c.wakeFlowLocked()
		c.mu.Unlock()
	}
	return c.write(func() error {
		if hasTable {
			// The smallest size of the frame first: lowered and
			// raised again, the table is evicted all the same and
			// the next block must say so (RFC 7541 4.2).
			c.henc.SetMaxDynamicTableSizeLimit(min(minTable, 4096))
			c.henc.SetMaxDynamicTableSizeLimit(min(tableSize, 4096))
		}
		return c.fr.WriteSettingsAck()
	})
}

func (c *conn) wakeFlowLocked() {
	if c.closed {
		return
	}
	close(c.flowCh)
	c.flowCh = make(chan struct{})
}

func (c *conn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		c.sendWindow += inc
		if c.sendWindow > maxWindow {
			return connError{http2.ErrCodeFlowControl, "connection window overflow"}
		}
		c.wakeFlowLocked()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxSeen {
			return connError{http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
		}
		return nil
	}
	st.sendWindow += inc
	if st.sendWindow > maxWindow {
		c.mu.Unlock()
		c.streamError(f.StreamID, http2.ErrCodeFlowControl)
		c.mu.Lock()
		return nil
	}
	c.wakeFlowLocked()
	return nil
}

func (c *conn) processReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxSeen {
			return connError{http2.ErrCodeProtocol, "RST_STREAM on an idle stream"}
		}
		return nil
	}
	flood := c.countResetLocked()
	c.endStreamLocked(st, errStreamClosed)
	c.wakeFlowLocked()
	if flood {
		return connError{http2.ErrCodeEnhanceYourCalm, "too many stream resets"}
	}
	return nil
}

func (c *conn) processData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length)
	data := f.Data()
	c.mu.Lock()
	if n > c.recvWindow {
		c.mu.Unlock()
		return connError{http2.ErrCodeFlowControl, "DATA beyond the connection window"}
	}
	c.recvWindow -= n
	st := c.streams[id]
	if st != nil && st.bodyClosed && !st.remoteDone {
		// The handler closed the body: the bytes are dropped and
		// returned at once.
		c.recvUnacked += n
		if n > st.recvWindow {
			c.mu.Unlock()
			c.streamError(id, http2.ErrCodeFlowControl)
			return nil
		}
		if f.StreamEnded() {
			st.remoteDone = true
		}
		c.mu.Unlock()
		c.sendWindowUpdates(nil, false)
		return nil
	}
	if st == nil || st.remoteDone {
		// Closed or half-closed (remote): the bytes still count against
		// the connection window, returned at once.
		c.recvUnacked += n
		ignore := st == nil && c.weResetLocked(id)
		c.mu.Unlock()
		c.sendWindowUpdates(nil, false)
		if st == nil && id > c.maxSeen {
			return connError{http2.ErrCodeProtocol, "DATA on an idle stream"}
		}
		if ignore {
			// RFC 9113 5.1: sent before our RST_STREAM reached the
			// client; answering each would be a write per frame.
			return nil
		}
		c.streamError(id, http2.ErrCodeStreamClosed)
		return nil
	}
	if n > st.recvWindow {
		c.recvUnacked += n
		c.mu.Unlock()
		c.streamError(id, http2.ErrCodeFlowControl)
		return nil
	}
	st.recvWindow -= n
	// Padding is consumed at once.
	if pad := n - int64(len(data)); pad > 0 {
		c.recvUnacked += pad
		st.recvUnacked += pad
	}
	st.received += int64(len(data))
	if st.declaredLen >= 0 && st.received > st.declaredLen {
		c.recvUnacked += int64(len(data))
		c.mu.Unlock()
		c.streamError(id, http2.ErrCodeProtocol)
		return nil
	}
	if len(data) > 0 {
		if st.off > 0 && st.off == len(st.buf) {
			st.buf, st.off = st.buf[:0], 0
		} else if st.off > 0 && len(st.buf)+len(data) > cap(st.buf) {
			// A reader that never catches up (slower than the client)
			// would otherwise keep every byte it read in front of the
			// unread ones: the buffer stays the window's size.
			n := copy(st.buf, st.buf[st.off:])
			st.buf, st.off = st.buf[:n], 0
		}
		st.buf = append(st.buf, data...)
	}
	if f.StreamEnded() {
		if st.declaredLen >= 0 && st.received != st.declaredLen {
			// data is in buf: endStreamLocked gives it back.
			c.mu.Unlock()
			c.streamError(id, http2.ErrCodeProtocol)
			return nil
		}
		st.closeRemote(io.EOF)
	} else {
		st.signal()
	}
	c.mu.Unlock()
	return nil
}

// sendWindowUpdates returns consumed bytes to the client: the
// connection's when half the window is consumed, st's likewise (or
// always, with force).
func (c *conn) sendWindowUpdates(st *stream, force bool) {
	c.mu.Lock()
	var connInc, stInc int64
	if c.recvUnacked >= int64(c.srv.connWindow())/2 || (force && c.recvUnacked > 0) {
		connInc = c.recvUnacked
		c.recvUnacked = 0
		c.recvWindow += connInc
	}
	var id uint32
	if st != nil && !st.remoteDone && !st.reset && (st.recvUnacked >= int64(c.srv.streamWindow())/2 || (force && st.recvUnacked > 0)) {
		stInc = st.recvUnacked
		st.recvUnacked = 0
		st.recvWindow += stInc
		id = st.id
	}
	c.mu.Unlock()
	if connInc == 0 && stInc == 0 {
		return
	}
	_ = c.write(func() error {
		if connInc > 0 {
			if err := c.fr.WriteWindowUpdate(0, uint32(connInc)); err != nil {
				return err
			}
		}
		if stInc > 0 {
			return c.fr.WriteWindowUpdate(id, uint32(stInc))
		}
		return nil
	})
}

func (c *conn) processHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return connError{http2.ErrCodeProtocol, "even stream id from a client"}
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		if st.remoteDone {
			c.mu.Unlock()
			if st.localDone {
				// Closed both ways; only not yet removed (the
				// handler's goroutine does so just after writing
				// END_STREAM): as on a closed stream (RFC 9113 5.1).
				return connError{http2.ErrCodeStreamClosed, "HEADERS on a closed stream"}
			}
			c.streamError(id, http2.ErrCodeStreamClosed)
			return nil
		}
		// Trailers: END_STREAM, no pseudo-headers; else the request
		// is malformed (RFC 9113 8.1): a stream error, as net/http.
		// A trailer over MaxHeaderBytes (the Framer dropped fields)
		// is refused whole, not passed on short of what was sent.
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 || f.Truncated {
			c.mu.Unlock()
			c.streamError(id, http2.ErrCodeProtocol)
			return nil
		}
		if st.declaredLen >= 0 && st.received != st.declaredLen {
			c.mu.Unlock()
			c.streamError(id, http2.ErrCodeProtocol)
			return nil
		}
		// Kept aside: r.Trailer belongs to the handler's goroutine (a
		// proxy clones it while the body streams); Read moves these
		// there at EOF. The fields that frame or route a request are
		// refused, as by the HTTP/1 server, and so is every field
		// net/http refuses in a trailer (credentials, content
		// metadata, ...).
		var tr http.Header
		for _, hf := range f.RegularFields() {
			k := canonicalKey(hf.Name)
			if !httpguts.ValidTrailerHeader(k) {
				c.mu.Unlock()
				c.streamError(id, http2.ErrCodeProtocol)
				return nil
			}
			if tr == nil {
				tr = http.Header{}
			}
			tr[k] = append(tr[k], trimOWS(hf.Value))
		}
		st.trailer = tr
		st.closeRemote(io.EOF)
		c.mu.Unlock()
		return nil
	}
	if id <= c.maxSeen {
		if c.weResetLocked(id) {
			// RFC 9113 5.1: frames the client sent before our
			// RST_STREAM reached it (a trailer) are ignored.
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		return connError{http2.ErrCodeProtocol, "HEADERS on a closed stream"}
	}
	c.maxSeen = id
	if c.goneAway {
		c.mu.Unlock()
		return nil // after our GOAWAY: ignored
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.mu.Unlock()
		c.streamError(id, http2.ErrCodeProtocol)
		return nil
	}
	if uint32(len(c.streams)) >= c.srv.maxStreams() {
		c.mu.Unlock()
		c.streamError(id, http2.ErrCodeRefusedStream)
		return nil
	}
	c.mu.Unlock()

	if f.Truncated {
		return c.writeTooLarge(id, !f.StreamEnded())
	}
	req, declared, code := c.newRequest(f)
	if code != 0 {
		c.streamError(id, code)
		return nil
	}
	st := newStream(c, id, &req, declared)
	if expectsContinue(req.Header) {
		// As net/http: the handler sees no Expect; the 100 is sent
		// when it first reads the body.
		delete(req.Header, "Expect")
		st.owesContinue.Store(!f.StreamEnded())
	}
	if f.StreamEnded() {
		st.remoteDone = true
		st.bodyErr = io.EOF
		st.req.Body = http.NoBody
		if declared > 0 {
			st.cancel()
			c.streamError(id, http2.ErrCodeProtocol)
			return nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	st.sendWindow = int64(c.peerInitWindow)
	c.streams[id] = st
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	if c.running >= int(c.srv.maxStreams()) {
		if len(c.queue) >= int(c.srv.maxStreams()) {
			return connError{http2.ErrCodeEnhanceYourCalm, "too many handlers of reset streams still running"}
		}
		c.queue = append(c.queue, st)
		return nil
	}
	c.running++
	c.startLocked(st)
	return nil
}

// trimOWS removes the spaces and tabs around a field value.
func trimOWS(v string) string {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

func expectsContinue(h http.Header) bool {
	vv := h["Expect"]
	return len(vv) > 0 && httpguts.HeaderValuesContainsToken(vv, "100-continue")
}

// maxIdleWorkers bounds the goroutines a connection keeps waiting for its
// next stream.
const maxIdleWorkers = 32

// startLocked runs st's handler on one of the connection's idle workers,
// or on a new one. A worker's stack has grown to what a handler needs:
// a goroutine per stream grew a new one from the smallest size, copying
// it at every doubling, for every request. (mu)
func (c *conn) startLocked(st *stream) {
	if c.idleWorkers > 0 {
		c.idleWorkers--
		c.work <- st // buffered for every idle worker: never blocks
		return
	}
	go c.worker(st)
}

// worker runs st's handler, then those the connection hands it, until
// the connection ends or enough workers wait.
func (c *conn) worker(st *stream) {
	for {
		st.run()
		c.mu.Lock()
		// The streams handed over but not yet taken are as many
		// workers waiting: counted, the buffer holds every stream
		// handed to a waiting worker and startLocked never blocks.
		if c.closed || c.idleWorkers+len(c.work) >= maxIdleWorkers {
			c.mu.Unlock()
			return
		}
		c.idleWorkers++
		c.mu.Unlock()
		select {
		case st = <-c.work:
		case <-c.baseCtx.Done():
			c.mu.Lock()
			select {
			case st = <-c.work: // handed over before the end: it runs
				c.mu.Unlock()
				continue
			default:
			}
			c.idleWorkers--
			c.mu.Unlock()
			return
		}
	}
}

// handlerDone is called when a stream's handler returned.
func (c *conn) handlerDone(st *stream) {
	c.mu.Lock()
	c.running--
	for len(c.queue) > 0 && c.running < int(c.srv.maxStreams()) {
		next := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		if next.reset {
			continue
		}
		c.running++
		c.startLocked(next)
	}
	c.streamsChangedLocked()
	c.mu.Unlock()
}

// writeTooLarge answers 431; a request body still coming is refused with
// RST_STREAM NO_ERROR (RFC 9113 8.1), and what the client sent on the
// stream before it learns so is ignored, as for an early answer.
func (c *conn) writeTooLarge(id uint32, bodyComing bool) error {
	if bodyComing {
		c.mu.Lock()
		c.noteResetLocked(id)
		c.mu.Unlock()
	}
	return c.write(func() error {
		c.hbuf.Reset()
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "431"})
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true, EndStream: true}); err != nil || !bodyComing {
			return err
		}
		return c.fr.WriteRSTStream(id, http2.ErrCodeNo)
	})
}

// newRequest builds the request of a HEADERS frame, or the code to reset
// the stream with. The request is a value: newStream copies it with the
// stream's context (a request built on the heap was one allocation more
// per stream).
func (c *conn) newRequest(f *http2.MetaHeadersFrame) (http.Request, int64, http2.ErrCode) {
	var method, scheme, path, authority string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":path":
			path = hf.Value
		case ":authority":
			authority = hf.Value
		default:
			return http.Request{}, 0, http2.ErrCodeProtocol // :status or unknown
		}
	}
	// A method is a token (RFC 9110 9.1): one with a space or a tab
	// written into an HTTP/1.1 request line makes more than three parts.
	if !httpguts.ValidHeaderFieldName(method) {
		return http.Request{}, 0, http2.ErrCodeProtocol
	}
	if method == "CONNECT" {
		if scheme != "" || path != "" || authority == "" {
			return http.Request{}, 0, http2.ErrCodeProtocol
		}
	} else if (scheme != "http" && scheme != "https") || path == "" || (path[0] != '/' && !(path == "*" && method == "OPTIONS")) ||
		strings.IndexByte(path, ' ') >= 0 {
		// No space either (no URI has one): url.ParseRequestURI keeps
		// one in the query, which an HTTP/1.1 upstream would then get
		// raw in its request line ("GET /a?b c HTTP/1.1").
		return http.Request{}, 0, http2.ErrCodeProtocol
	}
	regular := f.RegularFields()
	h := make(http.Header, len(regular))
	vals := make([]string, 0, len(regular))
	declared := int64(-1)
	var cookies []string
	for _, hf := range regular {
		// Whitespace around a value is no part of it (RFC 9113
		// 8.2.1 forbids it there; RFC 9110 5.5): trimmed as by the
		// HTTP/1.x server, so that the route and an HTTP/1.1 upstream
		// (which trims it) read the same value.
		v := trimOWS(hf.Value)
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return http.Request{}, 0, http2.ErrCodeProtocol
		case "te":
			if v != "trailers" {
				return http.Request{}, 0, http2.ErrCodeProtocol
			}
		case "content-length":
			n, err := strconv.ParseUint(v, 10, 63)
			if err != nil || (declared >= 0 && int64(n) != declared) {
				return http.Request{}, 0, http2.ErrCodeProtocol
			}
			declared = int64(n)
		case "cookie":
			cookies = append(cookies, v)
			continue
		}
		k := canonicalKey(hf.Name)
		if vv := h[k]; vv != nil {
			h[k] = append(vv, v)
		} else {
			// one backing array for the single values, as net/http's
			vals = append(vals, v)
			h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	if len(cookies) > 0 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	// A Host field naming another authority than :authority is malformed
	// (RFC 9113 8.3.1): routing by one and a handler or an upstream
	// reading the other must not disagree.
	if hosts := h["Host"]; len(hosts) > 1 || len(hosts) == 1 && authority != "" && !strings.EqualFold(hosts[0], authority) {
		return http.Request{}, 0, http2.ErrCodeProtocol
	}
	if authority == "" {
		authority = h.Get("Host")
	}
	// As net/http: no userinfo (RFC 9113 8.3.1), only valid host
	// characters (what routes and upstream requests are built from).
	if strings.Contains(authority, "@") || !httpguts.ValidHostHeader(authority) {
		return http.Request{}, 0, http2.ErrCodeProtocol
	}
	req := http.Request{
		Method: method, Proto: "HTTP/2.0", ProtoMajor: 2, Header: h, Host: authority,
		RequestURI: path, RemoteAddr: c.remoteAddr, TLS: c.tls, ContentLength: declared,
	}
	if method == "CONNECT" {
		req.URL = &url.URL{Host: authority}
		req.RequestURI = authority
	} else {
		u, err := parseURL(path)
		if err != nil {
			return http.Request{}, 0, http2.ErrCodeProtocol
		}
		req.URL = u
	}
	if f.StreamEnded() && declared < 0 {
		req.ContentLength = 0
	}
	if vv := h["Trailer"]; len(vv) > 0 {
		req.Trailer = http.Header{}
		for _, v := range vv {
			for _, k := range strings.Split(v, ",") {
				if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
					req.Trailer[k] = nil
				}
			}
		}
	}
	return req, declared, 0
}

// waitFlow takes up to n bytes of send window for st, waiting for the
// client's WINDOW_UPDATEs until the write deadline (SetWriteDeadline, or
// WriteTimeout from the first wait).
func (c *conn) waitFlow(st *stream, n int) (int, error) {
	var timer *time.Timer
	var wait time.Time // the end of WriteTimeout from the first wait
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if st.reset || c.closed {
			c.mu.Unlock()
			return 0, errStreamClosed
		}
		avail := min(int64(n), st.sendWindow, c.sendWindow, int64(c.peerMaxFrame))
		if avail > 0 {
			st.sendWindow -= avail
			c.sendWindow -= avail
			c.mu.Unlock()
			return int(avail), nil
		}
		ch := c.flowCh
		deadline := st.rw.wdeadline
		c.mu.Unlock()
		if deadline.IsZero() && c.srv.WriteTimeout > 0 {
			if wait.IsZero() {
				wait = time.Now().Add(c.srv.WriteTimeout)
			}
			deadline = wait
		}
		var tc <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			tc = timer.C
		}
		select {
		case <-ch:
		case <-tc:
			return 0, os.ErrDeadlineExceeded
		}
	}
}
