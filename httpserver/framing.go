package httpserver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// This file holds every rule on how a request is framed: where its head
// ends, what its request line and header fields may hold, how long its
// body is (Content-Length or chunked) and what a chunked body and its
// trailer may hold. A request is refused unless exactly one reading of it
// exists (RFC 9112), so that no proxy in front of this server, nor any
// server behind it, can see a different request boundary:
//
//   - Transfer-Encoding together with Content-Length, Transfer-Encoding on
//     HTTP/1.0, a Transfer-Encoding whose final coding is not exactly
//     "chunked" or that names chunked twice, more than one Content-Length
//     field, or one that is not a plain decimal number: 400. A coding
//     other than chunked before a final chunked: 501.
//   - Bare LF or CR, obs-fold (a line starting with a space or tab),
//     whitespace before a colon, a field name that is not a token, a
//     control byte (other than tab) in a field value: 400.
//   - An HTTP/1.1 request without exactly one valid Host field, more than
//     one Host field, an absolute-form target whose authority differs from
//     Host: 400.
//   - A request line that is not method SP target SP HTTP/d.d: 400; an
//     HTTP version other than 1.x: 505.
//   - A chunk-size line that is not 1*HEXDIG [";" chunk-ext] CRLF, a
//     size over 2^62, chunk data not followed by CRLF, a trailer field that
//     breaks the field rules or is a framing or routing field
//     (Content-Length, Transfer-Encoding, Host, Trailer): 400.
//
// After any of these the server answers and closes the connection: nothing
// after the refused request is read as another request.

// headError is a request the server refuses: status and a short reason
// that quotes none of the client's bytes.
type headError struct {
	status int
	msg    string
}

func (e *headError) Error() string { return e.msg }

func badHead(msg string) *headError { return &headError{http.StatusBadRequest, msg} }

// headInfo is what scanHead learnt about a valid head.
type headInfo struct {
	chunked bool
}

// headEnd looks for the end of a request head (the empty line) in b,
// starting at from. It returns the length of the head including the empty
// line, or end 0 and where to continue once b holds more bytes. A bare LF
// or CR fails at once, so a head using bare LF never waits for a CRLF.
func headEnd(b []byte, from int) (end, next int, err *headError) {
	for i := from; i < len(b); i++ {
		switch b[i] {
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return 0, 0, badHead("bare LF in the request head")
			}
			if i == 1 || (i >= 3 && b[i-3] == '\r' && b[i-2] == '\n') {
				return i + 1, 0, nil
			}
		case '\r':
			if i+1 == len(b) {
				return 0, i, nil // the next byte decides
			}
			if b[i+1] != '\n' {
				return 0, 0, badHead("bare CR in the request head")
			}
		}
	}
	return 0, len(b), nil
}

// scanHead checks a complete request head (as found by headEnd, CRLF line
// ends only) against the rules above.
func scanHead(head []byte) (headInfo, *headError) {
	var info headInfo
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	http11, absHost, herr := scanRequestLine(line)
	if herr != nil {
		return info, herr
	}

	var (
		nCL, nHost int
		host       string
		codings    []string
		haveTE     bool
	)
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(line) == 0 {
			break // the empty line ending the head
		}
		name, value, herr := scanField(line)
		if herr != nil {
			return info, herr
		}
		switch {
		case strings.EqualFold(name, "Content-Length"):
			nCL++
			if nCL > 1 {
				return info, badHead("more than one Content-Length")
			}
			if !validContentLength(value) {
				return info, badHead("invalid Content-Length: expected one decimal number")
			}
		case strings.EqualFold(name, "Transfer-Encoding"):
			haveTE = true
			for c := range strings.SplitSeq(value, ",") {
				codings = append(codings, strings.Trim(c, " \t"))
			}
		case strings.EqualFold(name, "Host"):
			nHost++
			host = value
		}
	}

	if haveTE {
		if !http11 {
			return info, badHead("Transfer-Encoding in an HTTP/1.0 request")
		}
		if nCL > 0 {
			return info, badHead("both Transfer-Encoding and Content-Length")
		}
		for i, c := range codings {
			switch {
			case c == "":
				return info, badHead("empty Transfer-Encoding coding")
			case !strings.EqualFold(c, "chunked"):
				if i == len(codings)-1 {
					return info, badHead("Transfer-Encoding does not end with chunked")
				}
			case i != len(codings)-1:
				return info, badHead("chunked is not the final Transfer-Encoding")
			}
		}
		if len(codings) > 1 {
			return info, &headError{http.StatusNotImplemented, "unsupported transfer coding"}
		}
		info.chunked = true
	}

	switch {
	case nHost > 1:
		return info, badHead("more than one Host")
	case nHost == 0 && http11:
		return info, badHead("missing required Host header")
	case nHost == 1 && (host == "" && http11 || !validHostField(host)):
		return info, badHead("malformed Host header")
	case absHost != "" && nHost == 1 && !strings.EqualFold(host, absHost):
		return info, badHead("Host differs from the request target's authority")
	}
	return info, nil
}

// scanRequestLine checks method SP request-target SP HTTP-version. It
// reports whether the request is HTTP/1.1 (or a later 1.x) and, for an
// absolute-form target, its authority.
func scanRequestLine(line []byte) (http11 bool, absHost string, err *headError) {
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 {
		return false, "", badHead("malformed request line")
	}
	if !validToken(method) {
		return false, "", badHead("invalid method")
	}
	v := version
	if len(v) != 8 || string(v[:5]) != "HTTP/" || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		return false, "", badHead("malformed HTTP version")
	}
	if v[5] != '1' {
		return false, "", &headError{http.StatusHTTPVersionNotSupported, "unsupported HTTP version"}
	}
	http11 = v[7] != '0'

	if len(target) == 0 {
		return false, "", badHead("malformed request target")
	}
	for i := 0; i < len(target); i++ {
		switch c := target[i]; {
		case c <= ' ' || c == 0x7f:
			return false, "", badHead("malformed request target")
		case c == '%':
			if i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2]) {
				if q := bytes.IndexByte(target, '?'); q < 0 || i < q {
					return false, "", badHead("malformed request target")
				}
			}
		}
	}
	t := string(target)
	switch {
	case t[0] == '/':
	case t == "*":
		if string(method) != http.MethodOptions {
			return false, "", badHead("malformed request target")
		}
	case string(method) == http.MethodConnect:
		// authority-form, checked by the parser
	default:
		scheme, after, ok := strings.Cut(t, "://")
		if !ok || !validScheme(scheme) {
			return false, "", badHead("malformed request target")
		}
		end := strings.IndexAny(after, "/?#")
		if end < 0 {
			end = len(after)
		}
		absHost = after[:end]
		if absHost == "" || !validHostField(absHost) {
			return false, "", badHead("malformed request target")
		}
	}
	return http11, absHost, nil
}

// scanField checks one header or trailer field line: a token, a colon
// right after it, and a value without control bytes other than tab (the
// value is returned without surrounding spaces and tabs).
func scanField(line []byte) (name, value string, err *headError) {
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", badHead("obsolete line folding")
	}
	n, v, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return "", "", badHead("header field without a colon")
	}
	if !validToken(n) {
		return "", "", badHead("invalid header name")
	}
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return "", "", badHead("invalid header value")
		}
	}
	return string(n), string(bytes.Trim(v, " \t")), nil
}

func validContentLength(v string) bool {
	if v == "" || len(v) > 18 { // 18 digits fit an int64
		return false
	}
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return false
		}
	}
	return true
}

// validHostField checks a Host value (or absolute-form authority):
// uri-host [":" port] without userinfo, as validHost plus no '@'.
func validHostField(h string) bool {
	return httpguts.ValidHostHeader(h) && !strings.ContainsAny(h, "@,")
}

func validScheme(s string) bool {
	if s == "" || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validToken reports whether b is an RFC 9110 token (a method, a field
// name): the rule of httpguts.ValidHeaderFieldName, for bytes and strings
// alike without a conversion on the hot path.
func validToken[T string | []byte](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// errBadBody is the error of a request body whose framing breaks the
// rules: the server answers 400 (if the response has not begun) and
// closes the connection.
type errBadBody struct{ msg string }

func (e *errBadBody) Error() string { return "malformed request body: " + e.msg }

func badBody(msg string) error { return &errBadBody{msg} }

func isBadBody(err error) bool {
	var e *errBadBody
	return errors.As(err, &e)
}

// maxChunkLine bounds a chunk-size line with its extensions.
const maxChunkLine = 4 << 10

// maxChunkSize bounds one chunk: sizes beyond it are an attack or a bug.
const maxChunkSize = 1 << 62

// chunkedBody reads a chunked request body strictly (RFC 9112 7.1) and
// sets the request's trailer at its end.
type chunkedBody struct {
	br         *bufio.Reader
	req        *http.Request
	maxTrailer int
	remain     int64 // bytes left in the current chunk
	needCRLF   bool  // the current chunk's data was read: CRLF follows
	err        error // sticky: io.EOF at the end
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	for b.err == nil {
		if b.remain > 0 {
			if len(p) == 0 {
				return 0, nil
			}
			if int64(len(p)) > b.remain {
				p = p[:b.remain]
			}
			n, err := b.br.Read(p)
			b.remain -= int64(n)
			if b.remain == 0 {
				b.needCRLF = true
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				b.err = err
			}
			return n, err
		}
		if b.needCRLF {
			crlf, err := b.br.Peek(2)
			if err != nil {
				b.err = eofUnexpected(err)
				break
			}
			if crlf[0] != '\r' || crlf[1] != '\n' {
				b.err = badBody("chunk data not followed by CRLF")
				break
			}
			_, _ = b.br.Discard(2)
			b.needCRLF = false
		}
		line, err := readCRLFLine(b.br, maxChunkLine)
		if err != nil {
			b.err = err
			break
		}
		size, err := parseChunkSize(line)
		if err != nil {
			b.err = err
			break
		}
		if size == 0 {
			b.err = b.readTrailer()
			break
		}
		b.remain = size
	}
	return 0, b.err
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readCRLFLine reads a line ending in CRLF, at most max bytes with it, and
// returns it without the CRLF. A bare CR or LF is a framing error.
func readCRLFLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, badBody("chunk line or trailer too long")
		}
		line = append(line, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, eofUnexpected(err)
		}
		break
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, badBody("bare LF")
	}
	line = line[:len(line)-2]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, badBody("bare CR")
	}
	return line, nil
}

// parseChunkSize parses chunk-size [";" chunk-ext].
func parseChunkSize(line []byte) (int64, error) {
	i := 0
	var size int64
	for ; i < len(line) && isHex(line[i]); i++ {
		if size > maxChunkSize>>4 {
			return 0, badBody("chunk size too large")
		}
		size = size<<4 | int64(unhex(line[i]))
	}
	if i == 0 {
		return 0, badBody("invalid chunk size")
	}
	rest := line[i:]
	if len(rest) == 0 {
		return size, nil
	}
	// RFC 9112 allows spaces before ";", but net/http's chunked reader
	// (and others) refuse them: refusing them too keeps one reading.
	ext := rest
	if ext[0] != ';' {
		return 0, badBody("invalid chunk size")
	}
	if !validChunkExt(ext) {
		return 0, badBody("invalid chunk extension")
	}
	return size, nil
}

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// validChunkExt checks *( BWS ";" BWS name [ BWS "=" BWS ( token /
// quoted-string ) ] ).
func validChunkExt(b []byte) bool {
	i := 0
	ws := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
	}
	token := func() bool {
		start := i
		for i < len(b) && validToken(b[i:i+1]) {
			i++
		}
		return i > start
	}
	for {
		ws()
		if i == len(b) {
			return true
		}
		if b[i] != ';' {
			return false
		}
		i++
		ws()
		if !token() {
			return false
		}
		ws()
		if i == len(b) || b[i] != '=' {
			continue
		}
		i++
		ws()
		if i < len(b) && b[i] == '"' {
			i++
			for {
				if i == len(b) {
					return false
				}
				c := b[i]
				i++
				if c == '"' {
					break
				}
				if c == '\\' {
					if i == len(b) {
						return false
					}
					c = b[i]
					i++
				}
				if (c < ' ' && c != '\t') || c == 0x7f {
					return false
				}
			}
		} else if !token() {
			return false
		}
	}
}

// readTrailer reads the trailer section after the last chunk: field lines
// by the header rules, none of them a framing or routing field, at most
// maxTrailer bytes. It sets the fields in req.Trailer and returns io.EOF.
func (b *chunkedBody) readTrailer() error {
	total := 0
	var fields http.Header
	for {
		line, err := readCRLFLine(b.br, b.maxTrailer-total+2)
		if err != nil {
			return err
		}
		total += len(line) + 2
		if len(line) == 0 {
			break
		}
		name, value, herr := scanField(line)
		if herr != nil {
			return badBody("trailer: " + herr.msg)
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		switch key {
		case "Content-Length", "Transfer-Encoding", "Host", "Trailer":
			return badBody("trailer field " + key + " is not allowed")
		}
		if fields == nil {
			fields = http.Header{}
		}
		fields[key] = append(fields[key], value)
	}
	if len(fields) > 0 {
		if b.req.Trailer == nil {
			b.req.Trailer = http.Header{}
		}
		for k, vs := range fields {
			b.req.Trailer[k] = vs
		}
	}
	return io.EOF
}

// Close does nothing: the unread rest is dealt with by the request loop.
func (b *chunkedBody) Close() error { return nil }
