package transform

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/switchyard/switchyard/httpx"
)

// MaxBytes returns middleware limiting request bodies to n bytes (n < 0 is
// taken as 0: no body at all).
//
// A request whose Content-Length exceeds n is answered at once with
// 413 {"code": "body_too_large"} and never forwarded (a client waiting for
// 100 Continue sends nothing). A body of unknown length (chunked, or
// HTTP/2 without content-length) is forwarded through
// http.MaxBytesReader: once it passes n bytes, reading it fails with a
// *httpx.Error of status 413 and code body_too_large, which aborts the
// upstream request; the client then gets that 413 when the proxy reports
// the error (when the route retries, the proxy reads small bodies before
// forwarding and currently answers 400 bad_request_body instead), and
// net/http closes the client connection afterwards.
func MaxBytes(n int64) httpx.Middleware {
	n = max(n, 0)
	msg := "request body exceeds the limit of " + strconv.FormatInt(n, 10) + " bytes"
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				httpx.WriteError(w, r, &httpx.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
					Msg: "request body of " + strconv.FormatInt(r.ContentLength, 10) + " bytes exceeds the limit of " + strconv.FormatInt(n, 10) + " bytes"})
				return
			}
			if r.ContentLength >= 0 || r.Body == nil || r.Body == http.NoBody {
				next.ServeHTTP(w, r) // net/http already stops a body at its Content-Length
				return
			}
			r2 := *r
			r2.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, n), msg: msg}
			next.ServeHTTP(w, &r2)
		})
	}
}

// limitedBody turns the *http.MaxBytesError of a body over the limit into a
// *httpx.Error, so the proxy answers 413 rather than 502.
type limitedBody struct {
	io.ReadCloser
	msg string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if err != nil && errors.As(err, &mbe) {
		err = &httpx.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Msg: b.msg, Err: err}
	}
	return n, err
}
