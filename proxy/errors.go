package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/retry"
)

var (
	errNoTarget = &httpx.Error{Status: http.StatusServiceUnavailable, Code: "no_target",
		Msg: "no healthy target available", RetryAfter: time.Second}
)

// classify maps a transport error to the retry package's error kind.
func classify(err error) retry.ErrorKind {
	var op *net.OpError
	switch {
	case isDialError(err):
		return retry.ConnectFailure
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return retry.Timeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return retry.Reset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The upstream closed the connection before a whole response
		// header (a process killed with the request in hand closes its
		// sockets): a reset by another name (nginx's proxy_next_upstream
		// "error"). Retried only where retry.Safe allows.
		return retry.Reset
	case errors.As(err, &op):
		return retry.Reset
	}
	return retry.Other
}

// isDialError reports whether err happened while connecting, so the request
// never reached a backend and any request may be retried safely.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || isTLSError(err)
}

// isTLSError reports whether err is a failed TLS handshake with a target:
// its certificate did not verify, or it refused ours (an alert such as
// certificate_required). The request was not processed, as after a
// refused connection.
func isTLSError(err error) bool {
	var (
		ae tls.AlertError
		ve *tls.CertificateVerificationError
		he tls.RecordHeaderError
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
		ci x509.CertificateInvalidError
	)
	var op *net.OpError // crypto/tls reports a peer's alert as Op "remote error"
	return errors.As(err, &ae) || errors.As(err, &ve) || errors.As(err, &he) ||
		errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) ||
		errors.As(err, &op) && op.Op == "remote error"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// toError turns an upstream failure into the response the client sees.
func toError(err error, clientGone bool) *httpx.Error {
	var pe *httpx.Error
	if errors.As(err, &pe) {
		return pe // e.g. a body-size middleware's 413
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &httpx.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Msg: "request body larger than " + strconv.FormatInt(tooLarge.Limit, 10) + " bytes", Err: err}
	}
	if clientGone {
		return &httpx.Error{Status: 499, Code: "client_closed", Msg: "client closed the request", Err: err}
	}
	var ce *ClientBodyError
	if errors.As(err, &ce) {
		return ce.toError()
	}
	if isTLSError(err) {
		return &httpx.Error{Status: http.StatusBadGateway, Code: "upstream_tls", Msg: "TLS with upstream failed", Err: err}
	}
	switch classify(err) {
	case retry.ConnectFailure:
		return &httpx.Error{Status: http.StatusBadGateway, Code: "upstream_unreachable", Msg: "could not connect to upstream", Err: err}
	case retry.Timeout:
		return &httpx.Error{Status: http.StatusGatewayTimeout, Code: "upstream_timeout", Msg: "upstream timed out", Err: err}
	}
	return &httpx.Error{Status: http.StatusBadGateway, Code: "upstream_error", Msg: "upstream request failed", Err: err}
}
