package h2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// stream is one request and its response. Fields marked (mu) are guarded
// by conn.mu; the rest belong to the handler's goroutine.
type stream struct {
	c      *conn
	id     uint32
	req    *http.Request
	ctx    context.Context
	cancel context.CancelFunc
	rw     responseWriter

	declaredLen int64 // content-length, or -1
	received    int64 // (mu) body bytes received
	buf         []byte
	off         int         // (mu) unread body bytes are buf[off:]
	remoteDone  bool        // (mu) END_STREAM or reset received
	bodyErr     error       // (mu) what Read returns after buf: io.EOF, errStreamClosed
	sendWindow  int64       // (mu)
	recvWindow  int64       // (mu)
	recvUnacked int64       // (mu)
	reset       bool        // (mu) reset or removed: nothing more is written
	trailer     http.Header // (mu) the request's trailer, moved to req.Trailer at EOF
	sig         chan struct{}
	bodyClosed  bool        // (mu) the handler closed the body
	localDone   bool        // (mu) the response's END_STREAM is written (or being)
	bodyTimeout bool        // (mu) a body read timed out
	rdeadline   time.Time   // (mu)
	rtimer      *time.Timer // body reads' wait timer (one reader at a time)
	// owesContinue: the request has "Expect: 100-continue" and a body,
	// and no head left yet: the body's first Read sends 100 Continue.
	// Cleared under wmu by that write, and by the handler before its
	// first head is written, so a 100 never follows the final head.
	owesContinue atomic.Bool
}

func newStream(c *conn, id uint32, req *http.Request, declared int64) *stream {
	st := &stream{c: c, id: id, declaredLen: declared, recvWindow: int64(c.srv.streamWindow()), sig: make(chan struct{}, 1)}
	st.ctx, st.cancel = context.WithCancel(c.baseCtx)
	st.req = req.WithContext(st.ctx)
	st.req.Body = (*body)(st)
	st.rw = responseWriter{st: st, header: http.Header{}}
	return st
}

// signal wakes a Read waiting for body bytes.
func (st *stream) signal() {
	select {
	case st.sig <- struct{}{}:
	default:
	}
}

// closeRemote ends the body with err once its bytes are read. (mu)
func (st *stream) closeRemote(err error) {
	if !st.remoteDone {
		st.remoteDone = true
		st.bodyErr = err
	} else if st.bodyErr == io.EOF && err != io.EOF {
		// The unread rest of a whole body is dropped: its bytes go
		// back to the connection window.
		st.bodyErr = err
		if n := int64(len(st.buf) - st.off); n > 0 {
			st.c.recvUnacked += n
		}
		st.buf, st.off = nil, 0
	}
	st.signal()
}

func (st *stream) run() {
	c := st.c
	defer c.handlerDone(st)
	finished := false
	defer func() {
		if finished {
			return
		}
		// A panic, or runtime.Goexit (recover gives nil): the stream
		// is reset, not left open without a handler.
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			c.srv.logf("h2: handler panic", "remote", c.remoteAddr, "panic", v)
		}
		st.resetWith(http2.ErrCodeInternal)
	}()
	c.srv.Handler.ServeHTTP(&st.rw, st.req)
	st.rw.finish()
	finished = true
}

// resetWith sends RST_STREAM unless the stream already ended.
func (st *stream) resetWith(code http2.ErrCode) {
	c := st.c
	c.mu.Lock()
	gone := st.reset
	c.endStreamLocked(st, errStreamClosed)
	if !gone {
		c.noteResetLocked(st.id)
	}
	c.mu.Unlock()
	if !gone {
		_ = c.write(func() error { return c.fr.WriteRSTStream(st.id, code) })
	}
}

// body is the request body.
type body stream

func (b *body) Read(p []byte) (int, error) {
	st := (*stream)(b)
	c := st.c
	if st.owesContinue.Load() {
		st.sendContinue()
	}
	var wait time.Time // the end of ReadBodyTimeout from the first wait
	armed := false
	defer func() {
		if armed {
			st.rtimer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if st.bodyClosed {
			c.mu.Unlock()
			return 0, http.ErrBodyReadAfterClose
		}
		if st.off < len(st.buf) {
			n := copy(p, st.buf[st.off:])
			st.off += n
			if st.off == len(st.buf) {
				// Drained: a buffer that grew while the handler
				// read slowly is let go (as net/http's pipe frees
				// its chunks), not kept for the stream's life.
				if cap(st.buf) > maxIdleBodyBuffer {
					st.buf = nil
				}
				st.buf, st.off = st.buf[:0], 0
			}
			st.recvUnacked += int64(n)
			c.recvUnacked += int64(n)
			var err error
			if st.off == 0 && st.remoteDone {
				err = st.bodyErr
				st.moveTrailerLocked(err)
			}
			c.mu.Unlock()
			c.sendWindowUpdates(st, false)
			return n, err
		}
		if st.remoteDone {
			err := st.bodyErr
			st.moveTrailerLocked(err)
			c.mu.Unlock()
			return 0, err
		}
		deadline := st.rdeadline
		c.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		if deadline.IsZero() && c.srv.ReadBodyTimeout > 0 {
			if wait.IsZero() {
				wait = time.Now().Add(c.srv.ReadBodyTimeout)
			}
			deadline = wait
		}
		var tc <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return 0, b.timedOut()
			}
			// one timer per stream, reused by every wait (Go 1.23
			// timers: Reset needs no drain)
			if st.rtimer == nil {
				st.rtimer = time.NewTimer(d)
			} else {
				st.rtimer.Reset(d)
			}
			armed = true
			tc = st.rtimer.C
		}
		select {
		case <-st.sig:
		case <-st.ctx.Done():
			c.mu.Lock()
			st.closeRemote(errStreamClosed)
			c.mu.Unlock()
		case <-tc:
			return 0, b.timedOut()
		}
	}
}

// ReadReady tells whether Read would return at once: body bytes, the
// body's end or its error are there (a proxy arms no watch for a read
// that cannot block).
func (b *body) ReadReady() bool {
	st := (*stream)(b)
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return st.bodyClosed || st.off < len(st.buf) || st.remoteDone
}

// sendContinue sends 100 Continue unless a head was written already (as
// net/http's HTTP/2 server, when the handler first reads the body).
func (st *stream) sendContinue() {
	c := st.c
	_ = c.write(func() error {
		if !st.owesContinue.CompareAndSwap(true, false) {
			return nil
		}
		c.mu.Lock()
		gone := st.reset
		c.mu.Unlock()
		if gone {
			return nil
		}
		c.hbuf.Reset()
		_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "100"})
		return c.writeBlock(st.id, false)
	})
}

// moveTrailerLocked sets the received trailer in req.Trailer when the
// body ends with io.EOF: in the handler's goroutine, which owns the
// request. (mu)
func (st *stream) moveTrailerLocked(err error) {
	if err != io.EOF || st.trailer == nil {
		return
	}
	if st.req.Trailer == nil {
		st.req.Trailer = http.Header{}
	}
	for k, vv := range st.trailer {
		st.req.Trailer[k] = vv
	}
	st.trailer = nil
}

func (b *body) timedOut() error {
	st := (*stream)(b)
	st.c.mu.Lock()
	st.bodyTimeout = true
	st.c.mu.Unlock()
	return errBodyTimeout
}

// Close stops reading: the client is told (RST_STREAM NO_ERROR once the
// response ends) and buffered bytes return to the connection window.
func (b *body) Close() error {
	st := (*stream)(b)
	c := st.c
	c.mu.Lock()
	if n := int64(len(st.buf) - st.off); n > 0 {
		c.recvUnacked += n
	}
	st.buf, st.off = nil, 0
	st.bodyClosed = true
	c.mu.Unlock()
	st.signal() // a Read blocked in another goroutine ends
	c.sendWindowUpdates(nil, false)
	return nil
}

// responseWriter is the stream's http.ResponseWriter.
type responseWriter struct {
	st          *stream
	header      http.Header
	status      int
	wroteHeader bool // the handler's status is set
	sentHeader  bool // HEADERS sent
	ended       bool // END_STREAM sent
	trailers    []string
	buf         []byte
	wdeadline   time.Time // (mu)
	handlerDone bool
	clen        int64 // the handler's Content-Length, or -1
	written     int64 // body bytes the handler wrote
	// head is the response head's fields as the header map was at
	// WriteHeader: later changes are ignored (as by net/http), but for
	// trailers. headArr backs it for most responses.
	head    []hpack.HeaderField
	headArr [8]hpack.HeaderField
}

const bufSize = 16 << 10

// maxIdleBodyBuffer is the most a drained request body buffer keeps.
const maxIdleBodyBuffer = 64 << 10

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader || w.handlerDone {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code < 200 && code != 101 {
		// Informational: sent now, the final status follows.
		c := w.st.c
		w.st.owesContinue.Store(false)
		fields := appendHeadFields(nil, w.header, nil)
		_ = c.write(func() error { return c.writeHeaderBlock(w.st.id, code, fields, false) })
		return
	}
	w.wroteHeader = true
	w.status = code
	w.clen = -1
	if vv := w.header["Content-Length"]; len(vv) == 1 {
		if n, err := strconv.ParseInt(vv[0], 10, 64); err == nil && n >= 0 {
			w.clen = n
		}
	}
	if vv := w.header["Trailer"]; len(vv) > 0 {
		for _, v := range vv {
			for _, k := range strings.Split(v, ",") {
				// As net/http: fields that frame, route or
				// authorize a message are no trailers.
				if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" && httpguts.ValidTrailerHeader(k) {
					w.trailers = append(w.trailers, k)
				}
			}
		}
	}
	w.head = appendHeadFields(w.headArr[:0], w.header, w.trailers)
	if _, ok := w.header["Date"]; !ok {
		// As net/http and the HTTP/1 server (RFC 9110 6.6.1).
		w.head = append(w.head, hpack.HeaderField{Name: "date", Value: w.st.c.srv.httpDate()})
	}
}

// appendHeadFields appends h's fields that go in a response head (not the
// trailers: declared ones in skip, http.TrailerPrefix ones; no
// connection-specific or invalid ones) to dst.
func appendHeadFields(dst []hpack.HeaderField, h http.Header, skip []string) []hpack.HeaderField {
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || slices.Contains(skip, k) {
			continue
		}
		name, ok := lowerKey(k)
		if !ok || connectionSpecific(name) {
			continue
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				dst = append(dst, hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
	return dst
}

// connectionSpecific tells whether a (lower-case) field name is
// connection-specific: never in HTTP/2 (RFC 9113 8.2.2).
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

func (w *responseWriter) bodyAllowed() bool {
	return !(w.status >= 100 && w.status < 200 || w.status == 204 || w.status == 304)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if w.st.req.Method == http.MethodHead {
		return len(p), nil
	}
	// Never more than the declared Content-Length (a malformed response,
	// RFC 9113 8.1.1), as net/http and the HTTP/1 server refuse.
	if w.clen >= 0 && w.written+int64(len(p)) > w.clen {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if len(w.buf)+len(p) <= bufSize {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.send(false); err != nil {
		return 0, err
	}
	if len(p) <= bufSize {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.writeData(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *responseWriter) WriteString(s string) (int, error) {
	if len(w.buf)+len(s) <= bufSize && w.wroteHeader && w.bodyAllowed() && w.st.req.Method != http.MethodHead && w.clen < 0 {
		w.written += int64(len(s))
		w.buf = append(w.buf, s...)
		return len(s), nil
	}
	return w.Write([]byte(s))
}

// Flush sends the headers and buffered body.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush for http.ResponseController.
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.send(false)
}

// TrailersWithoutLength says that a response with trailers gets no
// Content-Length though its handler never flushed (finish): a proxy
// need not flush before it returns to keep one off a gRPC response.
func (w *responseWriter) TrailersWithoutLength() {}

// SetReadDeadline bounds the request body's reads; a deadline in the past
// ends a read blocked now (from any goroutine).
func (w *responseWriter) SetReadDeadline(t time.Time) error {
	c := w.st.c
	c.mu.Lock()
	w.st.rdeadline = t
	c.mu.Unlock()
	w.st.signal()
	return nil
}

// SetWriteDeadline bounds waits for the client's flow-control window; a
// deadline in the past ends a wait now (from any goroutine).
func (w *responseWriter) SetWriteDeadline(t time.Time) error {
	c := w.st.c
	c.mu.Lock()
	w.wdeadline = t
	c.wakeFlowLocked()
	c.mu.Unlock()
	return nil
}
func (w *responseWriter) EnableFullDuplex() error { return nil }

// send writes HEADERS if not yet sent and the buffered body; end ends the
// stream (with trailers when there are any).
func (w *responseWriter) send(end bool) error {
	st, c := w.st, w.st.c
	trailers := end && w.hasTrailers()
	data := w.buf
	if !w.sentHeader {
		st.owesContinue.Store(false) // before the head's write: see sendContinue
	}
	// Common case: everything fits the windows at once and leaves in one
	// write: HEADERS, DATA, trailers.
	c.mu.Lock()
	if st.reset {
		c.mu.Unlock()
		return errStreamClosed
	}
	st.localDone = st.localDone || end
	fits := int64(len(data)) <= st.sendWindow && int64(len(data)) <= c.sendWindow
	if fits {
		st.sendWindow -= int64(len(data))
		c.sendWindow -= int64(len(data))
	}
	c.mu.Unlock()
	if fits {
		endData := end && !trailers
		err := c.write(func() error {
			if !w.sentHeader {
				if err := c.writeHeaderBlock(st.id, w.status, w.head, endData && len(data) == 0); err != nil {
					return err
				}
			}
			for len(data) > 0 {
				n := min(len(data), int(c.peerMaxFrameSize()))
				if err := c.fr.WriteData(st.id, endData && n == len(data), data[:n]); err != nil {
					return err
				}
				data = data[n:]
			}
			if trailers {
				return c.writeTrailers(st.id, w.header, w.trailers)
			}
			return nil
		})
		w.sentHeader = true
		w.buf = w.buf[:0]
		if end {
			w.ended = true
		}
		return err
	}
	// Piecewise: headers, then data as the windows allow.
	if !w.sentHeader {
		if err := c.write(func() error { return c.writeHeaderBlock(st.id, w.status, w.head, false) }); err != nil {
			return err
		}
		w.sentHeader = true
	}
	err := w.writeData(data, end && !trailers)
	w.buf = w.buf[:0]
	if err != nil {
		return err
	}
	if trailers {
		err = c.write(func() error { return c.writeTrailers(st.id, w.header, w.trailers) })
	}
	if end {
		w.ended = true
	}
	return err
}

func (c *conn) peerMaxFrameSize() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerMaxFrame
}

// writeData sends p as DATA frames as the windows allow (headers sent).
func (w *responseWriter) writeData(p []byte, end bool) error {
	st, c := w.st, w.st.c
	if !w.sentHeader {
		if err := c.write(func() error { return c.writeHeaderBlock(st.id, w.status, w.head, false) }); err != nil {
			return err
		}
		w.sentHeader = true
	}
	for len(p) > 0 {
		n, err := c.waitFlow(st, len(p))
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				st.resetWith(http2.ErrCodeCancel)
			}
			return err
		}
		if h := testHookAfterWaitFlow.Load(); h != nil {
			(*h)()
		}
		chunk := p[:n]
		p = p[n:]
		last := end && len(p) == 0
		err = c.write(func() error {
			// Framed under the write lock: a SETTINGS_MAX_FRAME_SIZE
			// lowered since waitFlow is ACKed before these frames
			// leave, and so binds them.
			for {
				m := min(len(chunk), int(c.peerMaxFrameSize()))
				if err := c.fr.WriteData(st.id, last && m == len(chunk), chunk[:m]); err != nil || m == len(chunk) {
					return err
				}
				chunk = chunk[m:]
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// testHookAfterWaitFlow, set by tests, runs between a response's flow
// window taken and its DATA written.
var testHookAfterWaitFlow atomic.Pointer[func()]

// finish ends the response after the handler returned.
func (w *responseWriter) finish() {
	st, c := w.st, w.st.c
	w.handlerDone = true
	if w.ended {
		w.close()
		return
	}
	if !w.wroteHeader {
		status := http.StatusOK
		c.mu.Lock()
		timedOut := st.bodyTimeout
		c.mu.Unlock()
		if timedOut {
			status = http.StatusRequestTimeout
		}
		w.wroteHeader = false
		w.WriteHeaderFinal(status)
	}
	if w.clen > w.written && w.bodyAllowed() && st.req.Method != http.MethodHead {
		// Shorter than its Content-Length: what was written goes, then
		// RST_STREAM, so that no one takes the response for whole.
		_ = w.send(false)
		w.close()
		return
	}
	if !w.sentHeader && w.bodyAllowed() && !w.headHas("content-length") && w.trailers == nil && !hasPrefixedTrailer(w.header) && st.req.Method != http.MethodHead {
		w.head = append(w.head, hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(w.buf))})
	}
	if len(w.buf) == 0 && w.sentHeader && !w.hasTrailers() {
		// Only END_STREAM is left: an empty DATA frame.
		c.mu.Lock()
		reset := st.reset
		st.localDone = true
		c.mu.Unlock()
		if !reset {
			_ = c.write(func() error { return c.fr.WriteData(st.id, true, nil) })
		}
		w.ended = true
		w.close()
		return
	}
	_ = w.send(true)
	w.close()
}

// WriteHeaderFinal sets the status after the handler returned.
func (w *responseWriter) WriteHeaderFinal(code int) {
	w.handlerDone = false
	w.WriteHeader(code)
	w.handlerDone = true
}

// close removes the stream after its response ended: a request body
// still coming is refused with RST_STREAM NO_ERROR (RFC 9113 8.1).
func (w *responseWriter) close() {
	st, c := w.st, w.st.c
	c.mu.Lock()
	gone := st.reset
	stillSending := !st.remoteDone
	c.endStreamLocked(st, errStreamClosed)
	if !gone && (stillSending || !w.ended) {
		c.noteResetLocked(st.id) // the RST_STREAM below
	}
	c.mu.Unlock()
	if !gone && stillSending && w.ended {
		_ = c.write(func() error { return c.fr.WriteRSTStream(st.id, http2.ErrCodeNo) })
	} else if !gone && !w.ended {
		_ = c.write(func() error { return c.fr.WriteRSTStream(st.id, http2.ErrCodeInternal) })
	}
	c.sendWindowUpdates(nil, false)
}

func hasPrefixedTrailer(h http.Header) bool {
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// hasTrailers tells whether the response has trailers to send: declared
// ones with values, or ones named with http.TrailerPrefix.
func (w *responseWriter) hasTrailers() bool {
	for _, k := range w.trailers {
		if len(w.header[k]) > 0 {
			return true
		}
	}
	return hasPrefixedTrailer(w.header)
}

func (w *responseWriter) headHas(name string) bool {
	for _, f := range w.head {
		if f.Name == name {
			return true
		}
	}
	return false
}

// writeHeaderBlock encodes and writes a response head. (wmu)
func (c *conn) writeHeaderBlock(id uint32, status int, fields []hpack.HeaderField, end bool) error {
	c.hbuf.Reset()
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
	for _, f := range fields {
		// A value new with every response (a request id) would only
		// cycle through the client's HPACK table, an insertion and an
		// eviction each: sent as a literal never indexed.
		if f.Name == "x-request-id" || f.Name == "traceparent" {
			f.Sensitive = true
		}
		_ = c.henc.WriteField(f)
	}
	return c.writeBlock(id, end)
}

// writeTrailers writes the declared trailers and those named with
// http.TrailerPrefix, with END_STREAM. (wmu)
func (c *conn) writeTrailers(id uint32, h http.Header, declared []string) error {
	c.hbuf.Reset()
	field := func(k string, vv []string) {
		name, ok := lowerKey(k)
		if !ok || !httpguts.ValidTrailerHeader(k) || connectionSpecific(name) {
			return
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
	for _, k := range declared {
		field(k, h[k])
	}
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			field(k[len(http.TrailerPrefix):], vv)
		}
	}
	return c.writeBlock(id, true)
}

// writeBlock writes hbuf as HEADERS and CONTINUATION frames. (wmu)
func (c *conn) writeBlock(id uint32, end bool) error {
	block := c.hbuf.Bytes()
	max := int(c.peerMaxFrameSize())
	first := block
	if len(first) > max {
		first = first[:max]
	}
	block = block[len(first):]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		frag := block
		if len(frag) > max {
			frag = frag[:max]
		}
		block = block[len(frag):]
		if err := c.fr.WriteContinuation(id, len(block) == 0, frag); err != nil {
			return err
		}
	}
	return nil
}

func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

var (
	lowerCache     sync.Map // canonical -> lower, bounded by lowerCacheSize
	lowerCacheSize = 0
	lowerMu        sync.Mutex
	canonCache     sync.Map // lower -> canonical
	canonCacheSize = 0
)

const maxKeyCache = 1000

// lowerKey is the wire name of a header key; false for an invalid one.
func lowerKey(k string) (string, bool) {
	if v, ok := lowerCache.Load(k); ok {
		return v.(string), true
	}
	if !httpguts.ValidHeaderFieldName(k) {
		return "", false
	}
	l := strings.ToLower(k)
	lowerMu.Lock()
	if lowerCacheSize < maxKeyCache {
		lowerCacheSize++
		lowerCache.Store(k, l)
	}
	lowerMu.Unlock()
	return l, true
}

// canonicalKey is http.CanonicalHeaderKey of a wire name, cached.
func canonicalKey(name string) string {
	if v, ok := canonCache.Load(name); ok {
		return v.(string)
	}
	k := http.CanonicalHeaderKey(name)
	lowerMu.Lock()
	if canonCacheSize < maxKeyCache {
		canonCacheSize++
		canonCache.Store(name, k)
	}
	lowerMu.Unlock()
	return k
}

func parseURL(path string) (*url.URL, error) {
	if path == "*" {
		return &url.URL{Path: "*"}, nil
	}
	return url.ParseRequestURI(path)
}
