package httpx

import (
	"net/http"
	"strconv"
	"strings"
)

// IsGRPC reports whether r is a gRPC call (Content-Type application/grpc,
// optionally +proto, +json ... or ;params), which wants its errors as gRPC
// statuses rather than JSON bodies.
func IsGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/grpc") {
		return false
	}
	rest := ct[len("application/grpc"):]
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

// gRPC status codes the gateway answers with (google.golang.org/grpc/codes).
const (
	GRPCInternal          = 13
	GRPCUnavailable       = 14
	GRPCDeadlineExceeded  = 4
	GRPCUnimplemented     = 12
	GRPCPermissionDenied  = 7
	GRPCUnauthenticated   = 16
	GRPCResourceExhausted = 8
	GRPCInvalidArgument   = 3
	GRPCCancelled         = 1
)

// GRPCCode maps a gateway error to the gRPC status a gRPC client should
// see: the mapping of gRPC's HTTP-to-gRPC table (doc/http-grpc-status-
// mapping.md), except that the gateway's own timeouts are
// DEADLINE_EXCEEDED and its size limits RESOURCE_EXHAUSTED.
func GRPCCode(e *Error) int {
	switch {
	case e.Code == "upstream_timeout" || e.Status == http.StatusGatewayTimeout || e.Status == http.StatusRequestTimeout:
		return GRPCDeadlineExceeded
	case e.Status == http.StatusRequestEntityTooLarge || e.Status == http.StatusTooManyRequests:
		return GRPCResourceExhausted
	case e.Status == http.StatusUnauthorized:
		return GRPCUnauthenticated
	case e.Status == http.StatusForbidden:
		return GRPCPermissionDenied
	case e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed:
		return GRPCUnimplemented
	case e.Status == 499:
		return GRPCCancelled
	case e.Status == http.StatusBadGateway || e.Status == http.StatusServiceUnavailable || e.Status == http.StatusMisdirectedRequest:
		return GRPCUnavailable
	}
	return GRPCInternal
}

// WriteGRPC answers a gRPC call with e as a trailers-only response: HTTP
// 200, Content-Type application/grpc, grpc-status and a percent-encoded
// grpc-message (the gRPC over HTTP/2 protocol's form of an error that
// ends a call before any message). The gateway's code is in the message.
func (e *Error) WriteGRPC(w http.ResponseWriter, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(GRPCCode(e)))
	msg := e.Msg + " (" + e.Code + ")"
	if requestID != "" {
		msg += " request_id=" + requestID
	}
	h.Set("Grpc-Message", GRPCMessageEncode(msg))
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(e.RetryAfter.Seconds()+0.999)))
	}
	w.WriteHeader(http.StatusOK)
}

// GRPCMessageEncode percent-encodes a grpc-message value: bytes outside
// printable ASCII and '%' itself become %XX (gRPC's PROTOCOL-HTTP2 rule),
// so any message is a valid header value.
func GRPCMessageEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(make([]byte, 0, len(s)+8), s[:i]...)
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	if b == nil {
		return s
	}
	return string(b)
}
