package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"
)

// grpcDirect reports whether r, a gRPC call to pool, takes forwardGRPC
// rather than httputil.ReverseProxy: an HTTP/2 request without an Upgrade
// field (which HTTP/2 forbids anyway) or a query (which ReverseProxy would
// clean of unparsable parameters; gRPC sends none), to a pool whose gRPC
// calls go to the frame-level HTTP/2 transport, whose response bodies
// tell whether data is ready (forwardGRPC's flushes depend on it).
func grpcDirect(r *http.Request, pool *Pool) bool {
	if _, ok := pool.transport.(grpcSplit); !ok {
		return false
	}
	if r.ProtoMajor != 2 || r.URL.RawQuery != "" || r.URL.ForceQuery {
		return false
	}
	_, up := r.Header["Upgrade"]
	return !up
}

// forwardGRPC proxies a gRPC call as h.rp (httputil.ReverseProxy) does,
// with the same rewrite, transport, response hooks, error handler and
// header and trailer handling, without the reverse proxy's per-call costs
// that gRPC's small messages make large: a timer and a goroutine per
// response to flush its header (ReverseProxy flushes a response without
// a length "immediately" through time.AfterFunc(-1)), a client trace
// (its context values and hooks) per request for 1xx responses, which
// gRPC does not use, and a mutex per write. Every piece of the response
// body is written and flushed as it comes, as before; the header alone is
// flushed first only when no body is ready yet (a server that sends its
// header and then waits for the client still gets its header through).
func (h *Handler) forwardGRPC(w http.ResponseWriter, r *http.Request) {
	// r.Clone, its header cloned with room for the fields the gateway
	// adds (no map growth, their values in the same backing array);
	// what else Clone copies deeply (forms, transfer encodings) a gRPC
	// call has not, and nothing here changes.
	out := r.WithContext(r.Context())
	out.URL = cloneURL(r.URL)
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	out.Header, st.hvals = cloneHeader(r.Header, grpcHeaderSpare)
	out.Trailer = r.Trailer.Clone()
	if r.ContentLength == 0 {
		out.Body = nil
	}
	if out.Body != nil {
		// As the reverse proxy: the transport's goroutine may outlive
		// this handler and must not read the client's body afterwards,
		// and its Close must not close the client's body.
		nb := &closedAfterReturn{rc: out.Body}
		out.Body = nb
		defer nb.Close()
	}
	out.Close = false
	removeHopByHop(out.Header)
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		st.setHeader(out.Header, "Te", "trailers")
	}
	// The client's forwarding fields are replaced (rewrite appends to an
	// incoming X-Forwarded-For chain itself).
	delete(out.Header, "Forwarded")
	delete(out.Header, "X-Forwarded-For")
	delete(out.Header, "X-Forwarded-Host")
	delete(out.Header, "X-Forwarded-Proto")
	h.rewrite(&httputil.ProxyRequest{In: r, Out: out})
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // no Go default User-Agent
	}

	res, err := attemptTransport{h: h}.RoundTrip(out)
	if err != nil {
		h.errorHandler(w, out, err)
		return
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		_ = res.Body.Close()
		h.errorHandler(w, out, errors.New("upstream switched protocols on a gRPC call that asked for no upgrade"))
		return
	}
	removeHopByHop(res.Header)
	if err := h.modifyResponse(res); err != nil {
		_ = res.Body.Close()
		h.errorHandler(w, out, err)
		return
	}
	dst := w.Header()
	for k, vv := range res.Header {
		if len(dst[k]) == 0 {
			dst[k] = vv // res.Header is not used after this
		} else {
			dst[k] = append(dst[k], vv...)
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	rc := http.NewResponseController(w)
	rb, _ := res.Body.(interface{ ready() bool })
	flushed := false
	if rb == nil || !rb.ready() {
		_ = rc.Flush()
		flushed = true
	}

	// (h2BufPool's *[]byte: the reverse proxy's pool, behind
	// httputil.BufferPool's []byte, allocates a pointer per Put.)
	bp := h2BufPool.Get().(*[]byte)
	defer h2BufPool.Put(bp)
	buf := *bp
	wrote := false
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			wrote = true
			if _, werr := w.Write(buf[:n]); werr != nil {
				h.abortGRPC(r, res, nil)
				return
			}
			// Written at once unless more is ready to go with it; a
			// flush error is the next write's (as the reverse proxy).
			if rb == nil || !rb.ready() {
				_ = rc.Flush()
				flushed = true
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			h.abortGRPC(r, res, rerr)
			return
		}
	}
	_ = res.Body.Close() // moves the trailers into res.Trailer
	if len(res.Trailer) > 0 && sendsTrailersUnflushed(w) {
		// The server sends header, body and trailers together when the
		// handler returns, without a Content-Length: one write.
	} else if len(res.Trailer) > 0 || wrote && !flushed {
		// The header goes out before the handler returns: net/http
		// adds no Content-Length, and sends the trailers after the body.
		// A response without body or trailers (gRPC's Trailers-Only,
		// its status in the header) is not flushed: net/http sends its
		// header with END_STREAM when the handler returns, as a gRPC
		// client requires.
		_ = rc.Flush()
	}
	if len(res.Trailer) == announced {
		for k, vv := range res.Trailer {
			dst[k] = append(dst[k], vv...)
		}
		return
	}
	for k, vv := range res.Trailer {
		k = trailerKey(k)
		if len(dst[k]) == 0 {
			dst[k] = vv
		} else {
			dst[k] = append(dst[k], vv...)
		}
	}
}

// grpcHeaderSpare is the room cloneHeader leaves for the fields a gRPC
// call's rewrite sets: Te, X-Forwarded-For, -Host, -Proto, X-Request-Id,
// Grpc-Timeout, Traceparent (and Tracestate).
const grpcHeaderSpare = 8

// cloneURL is a copy of u (as http.Request.Clone makes).
func cloneURL(u *url.URL) *url.URL {
	if u == nil {
		return nil
	}
	u2 := new(url.URL)
	*u2 = *u
	if u.User != nil {
		u2.User = new(url.Userinfo)
		*u2.User = *u.User
	}
	return u2
}

// trailerKey is http.TrailerPrefix+k, without an allocation for gRPC's
// trailers.
func trailerKey(k string) string {
	switch k {
	case "Grpc-Status":
		return http.TrailerPrefix + "Grpc-Status"
	case "Grpc-Message":
		return http.TrailerPrefix + "Grpc-Message"
	case "Grpc-Status-Details-Bin":
		return http.TrailerPrefix + "Grpc-Status-Details-Bin"
	}
	return http.TrailerPrefix + k
}

// trailerServer is a ResponseWriter whose server gives a response with
// trailers (declared in the Trailer field or named with
// http.TrailerPrefix) no Content-Length even when its handler never
// flushed, and sends them after the body (httpserver/h2's).
type trailerServer interface{ TrailersWithoutLength() }

// sendsTrailersUnflushed tells whether w, or a ResponseWriter it wraps
// (Unwrap, as http.ResponseController follows), is a trailerServer.
func sendsTrailersUnflushed(w http.ResponseWriter) bool {
	for range 32 {
		if _, ok := w.(trailerServer); ok {
			return true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
	return false
}

// abortGRPC ends a response whose body could not be copied (the
// upstream's body broke off, or the client stopped taking it) as the
// reverse proxy does: under net/http's server it panics with
// http.ErrAbortHandler, so the server resets the stream rather than
// ending the response as complete; elsewhere it returns. readErr, when
// not nil, is logged.
func (h *Handler) abortGRPC(r *http.Request, res *http.Response, readErr error) {
	if readErr != nil && !errors.Is(readErr, context.Canceled) && h.rp.ErrorLog != nil {
		h.rp.ErrorLog.Printf("httputil: ReverseProxy read error during body copy: %v", readErr)
	}
	_ = res.Body.Close()
	if r.Context().Value(http.ServerContextKey) == nil {
		return // not under net/http's server: nothing to abort
	}
	panic(http.ErrAbortHandler)
}

// closedAfterReturn is the request body handed to the transport: its
// Close does not close the client's body, and it refuses reads once the
// handler closed it on return (httputil.ReverseProxy's noopCloseReader).
type closedAfterReturn struct {
	rc     io.ReadCloser
	closed atomic.Bool
}

func (b *closedAfterReturn) Close() error {
	b.closed.Store(true)
	return nil
}

func (b *closedAfterReturn) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errors.New("proxy: read of a gRPC request body after its handler returned")
	}
	return b.rc.Read(p)
}

// hopByHopList are the hop-by-hop fields httputil.ReverseProxy removes
// from requests and responses.
var hopByHopList = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop removes the fields named in Connection and the standard
// hop-by-hop fields, as httputil.ReverseProxy does.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, f := range hopByHopList {
		delete(h, f)
	}
}
