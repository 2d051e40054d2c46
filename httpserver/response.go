package httpserver

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// smallBody is how much body a response holds back before it commits its
// header: a handler that writes less and returns gets a Content-Length
// instead of chunked encoding (as net/http).
const smallBody = 2 << 10

// response is the http.ResponseWriter of one request. Like net/http's, it
// is for the handler's goroutine only.
type response struct {
	c      *conn
	req    *http.Request
	body   *requestBody // nil when the request has none
	header http.Header

	// continueMu guards sending 100 Continue, which a body read may do on
	// another goroutine, against the other writes before the response
	// commits (see requestBody).
	continueMu    sync.Mutex
	continueState int // continueNone ... continueRefused

	status        int
	wroteHeader   bool // the final status was set
	committed     bool // the status line and header are in the write buffer
	contentLength int64
	written       int64
	chunked       bool
	closeAfter    bool
	clientClose   bool // the client asked to close after this response
	hijacked      bool
	pending       []byte
	trailers      []string
	err           error
}

// States of a client's expectation of 100 Continue.
const (
	continueNone    = iota // no expectation
	continueWanted         // sent by the first body read, unless the response begins first
	continueSent           // the client was told to send the body
	continueRefused        // the response began first: the client may not send the body
)

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ http.Hijacker       = (*response)(nil)
)

func (w *response) Header() http.Header { return w.header }

// WriteHeader sends 1xx informational responses at once and records the
// final status.
func (w *response) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("httpserver: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.continueMu.Lock()
		defer w.continueMu.Unlock()
		if code == http.StatusContinue {
			if w.continueState == continueSent {
				return // a body read sent it already (a proxy forwarding its upstream's)
			}
			if w.continueState == continueWanted {
				w.continueState = continueSent
			}
		}
		w.writeStatusLine(code)
		w.writeHeaderFields(false)
		_, _ = w.c.bw.WriteString("\r\n")
		w.fail(w.c.bw.Flush())
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := w.header.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err == nil && n >= 0 {
			w.contentLength = n
		} else {
			w.header.Del("Content-Length")
		}
	}
}

// sendContinue sends 100 Continue if the client waits for it and the
// response has not begun.
func (w *response) sendContinue() error {
	w.continueMu.Lock()
	defer w.continueMu.Unlock()
	if w.continueState != continueWanted {
		return nil
	}
	w.continueState = continueSent
	_, _ = w.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	return w.c.bw.Flush()
}

// stopContinue keeps body reads from sending 100 Continue once the
// response begins (and waits for one being sent).
func (w *response) stopContinue() {
	w.continueMu.Lock()
	if w.continueState == continueWanted {
		w.continueState = continueRefused
	}
	w.continueMu.Unlock()
}

// continueSent reports whether the client was told to send its body.
func (w *response) continueSent() bool {
	w.continueMu.Lock()
	defer w.continueMu.Unlock()
	return w.continueState == continueSent
}

func (w *response) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified && (w.status < 100 || w.status >= 200)
}

func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.committed {
		if w.contentLength < 0 && len(w.pending)+len(p) <= smallBody {
			w.pending = append(w.pending, p...)
			return len(p), nil
		}
		w.commit(false)
		if w.err != nil {
			return 0, w.err
		}
	}
	if err := w.writeBody(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *response) writeBody(p []byte) error {
	if len(p) == 0 || w.req.Method == http.MethodHead {
		return nil
	}
	bw := w.c.bw
	if w.chunked {
		var hdr [18]byte
		b := strconv.AppendInt(hdr[:0], int64(len(p)), 16)
		b = append(b, '\r', '\n')
		_, _ = bw.Write(b)
		_, _ = bw.Write(p)
		_, err := bw.WriteString("\r\n")
		w.fail(err)
		return w.err
	}
	w.fail(w.c.writeGathered(p))
	return w.err
}

// fail records the first write error. The client cannot be reached any
// more: the request's context is cancelled (as net/http does), so work
// for it stops, such as an upstream response being read to its end.
func (w *response) fail(err error) {
	if err != nil && w.err == nil {
		w.err = err
		w.c.mu.Lock()
		if w.c.cancel != nil {
			w.c.cancel(fmt.Errorf("%w: %w", errWriteFailed, err))
		}
		w.c.mu.Unlock()
	}
}

// commit writes the status line and header, choosing the body's framing,
// then the body held back so far. finishing means the handler returned, so
// the whole body is known.
func (w *response) commit(finishing bool) {
	if w.committed {
		return
	}
	w.committed = true
	w.stopContinue()
	h := w.header
	if w.c.s.inShutdown.Load() {
		w.closeAfter = true
	}
	if v := h["Connection"]; len(v) > 0 {
		for _, s := range v {
			if strings.EqualFold(strings.TrimSpace(s), "close") {
				w.closeAfter = true
			}
		}
		delete(h, "Connection")
	}
	delete(h, "Transfer-Encoding") // the framing is ours to choose

	switch {
	case !w.bodyAllowed():
		delete(h, "Content-Length")
	case w.contentLength >= 0:
		// declared by the handler
	case w.req.Method == http.MethodHead:
		// No body follows, so no framing to choose: the Content-Length
		// of the body the handler wrote, if it wrote all of it.
		if finishing && w.written > 0 {
			w.contentLength = w.written
			h["Content-Length"] = []string{strconv.FormatInt(w.written, 10)}
		}
	case finishing && !(w.req.ProtoAtLeast(1, 1) && hasTrailers(h)):
		// The whole body is known. Trailers need chunked encoding, so a
		// handler that declares them gets it anyway (as net/http).
		w.contentLength = w.written
		h["Content-Length"] = []string{strconv.FormatInt(w.written, 10)}
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
	default:
		w.closeAfter = true // HTTP/1.0: the body ends when the connection does
	}
	if w.clientClose || !w.req.ProtoAtLeast(1, 0) {
		w.closeAfter = true
	}

	if w.chunked {
		for _, v := range h["Trailer"] {
			for _, k := range strings.Split(v, ",") {
				if k = strings.TrimSpace(k); k != "" {
					w.trailers = append(w.trailers, http.CanonicalHeaderKey(k))
				}
			}
		}
	}
	w.writeStatusLine(w.status)
	w.writeHeaderFields(true)
	bw := w.c.bw
	if _, ok := h["Date"]; !ok {
		_, _ = bw.WriteString("Date: ")
		_, _ = bw.Write(w.c.s.httpDate())
		_, _ = bw.WriteString("\r\n")
	}
	if w.chunked {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.closeAfter:
		_, _ = bw.WriteString("Connection: close\r\n")
	case !w.req.ProtoAtLeast(1, 1):
		_, _ = bw.WriteString("Connection: keep-alive\r\n")
	}
	_, err := bw.WriteString("\r\n")
	w.fail(err)
	if len(w.pending) > 0 {
		p := w.pending
		w.pending = nil
		_ = w.writeBody(p)
	}
}

// hasTrailers reports whether h declares trailers, by a Trailer field or
// a field named with http.TrailerPrefix.
func hasTrailers(h http.Header) bool {
	if len(h["Trailer"]) > 0 {
		return true
	}
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

func (w *response) writeStatusLine(code int) {
	bw := w.c.bw
	if line := statusLine(code); line != "" {
		_, _ = bw.WriteString(line)
		return
	}
	var b [64]byte
	out := append(b[:0], "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	out = append(out, text...)
	out = append(out, '\r', '\n')
	_, _ = bw.Write(out)
}

// writeHeaderFields writes the handler's header fields: names that are not
// valid tokens are skipped and line breaks in values become spaces, so a
// handler cannot split the response; trailer-only fields (http.TrailerPrefix)
// and, for the final response, the framing fields of the other framing are
// left out, and so are declared trailer fields, which go in the trailer
// (a handler that writes a small body sets them before the header is
// written).
func (w *response) writeHeaderFields(final bool) {
	bw := w.c.bw
	for k, vs := range w.header {
		if !validToken(k) || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if final && (k == "Trailer" && !w.chunked || k == "Content-Length" && w.chunked || slices.Contains(w.trailers, k)) {
			continue
		}
		for _, v := range vs {
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			writeFieldValue(bw, v)
			_, _ = bw.WriteString("\r\n")
		}
	}
}

func writeFieldValue(bw *bufio.Writer, v string) {
	if strings.IndexAny(v, "\r\n") < 0 {
		_, _ = bw.WriteString(strings.TrimSpace(v))
		return
	}
	_, _ = bw.WriteString(strings.TrimSpace(strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(v)))
}

// finish completes the response after the handler returned.
func (w *response) finish() error {
	if w.hijacked {
		return nil
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.commit(true)
	if w.chunked {
		bw := w.c.bw
		_, _ = bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			if !validToken(k) {
				continue // as in the header: a name that is not a token would split the response
			}
			for _, v := range w.header[k] {
				_, _ = bw.WriteString(k + ": ")
				writeFieldValue(bw, v)
				_, _ = bw.WriteString("\r\n")
			}
		}
		for k, vs := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && validToken(name) {
				for _, v := range vs {
					_, _ = bw.WriteString(name + ": ")
					writeFieldValue(bw, v)
					_, _ = bw.WriteString("\r\n")
				}
			}
		}
		_, err := bw.WriteString("\r\n")
		w.fail(err)
	}
	if w.contentLength >= 0 && w.written < w.contentLength && w.bodyAllowed() && w.req.Method != http.MethodHead {
		w.closeAfter = true // a short body: the client must not wait for the rest on this connection
	}
	w.fail(w.c.bw.Flush())
	return w.err
}

// Flush sends the header (if not yet sent) and everything written so far.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError is Flush reporting the write error (http.ResponseController).
func (w *response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.commit(false)
	w.fail(w.c.bw.Flush())
	return w.err
}

// Hijack hands the connection to the handler (WebSocket and other
// protocol switches). Whatever was already written is flushed first.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.committed {
		if err := w.c.bw.Flush(); err != nil {
			return nil, nil, err
		}
	}
	w.stopContinue()
	c := w.c
	c.disarm()
	c.mu.Lock()
	c.hijacked = true
	c.mu.Unlock()
	w.hijacked = true
	c.dw.timeout = 0 // the handler owns the connection's deadlines now
	_ = c.nc.SetDeadline(time.Time{})
	return c.nc, bufio.NewReadWriter(c.br, c.bw), nil
}

// SetReadDeadline sets the connection's read deadline (ResponseController).
func (w *response) SetReadDeadline(t time.Time) error { return w.c.nc.SetReadDeadline(t) }

// SetWriteDeadline sets the connection's write deadline (ResponseController).
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.nc.SetWriteDeadline(t) }

// EnableFullDuplex allows reading the request body after writing the
// response began (ResponseController); this server always allows it.
func (w *response) EnableFullDuplex() error { return nil }

var statusLines = func() map[int]string {
	m := map[int]string{}
	for code := 100; code < 600; code++ {
		if t := http.StatusText(code); t != "" {
			m[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + t + "\r\n"
		}
	}
	return m
}()

func statusLine(code int) string {
	switch code {
	case 200:
		return "HTTP/1.1 200 OK\r\n"
	}
	return statusLines[code]
}

// dateCache holds the Date header value for the current second.
type dateCache struct {
	sec int64
	b   []byte
}

// httpDate returns the current time in the HTTP date format, formatted
// once per second.
func (s *Server) httpDate() []byte {
	now := time.Now()
	if d := s.date.Load(); d != nil && d.sec == now.Unix() {
		return d.b
	}
	d := &dateCache{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	s.date.Store(d)
	return d.b
}
