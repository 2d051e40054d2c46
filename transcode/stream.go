package transcode

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/switchyard/switchyard/httpx"
)

// streamWriter turns a server-streaming call's messages into
// newline-delimited JSON as they arrive: the first message commits 200;
// a failure after it is a last line {"error": {...}}, since the status
// was sent already.
type streamWriter struct {
	t       *Transcoder
	ru      *rule
	w       http.ResponseWriter
	rc      *http.ResponseController
	h       http.Header
	code    int
	header  http.Header
	pending []byte
	started bool
	broken  error // the answer stopped making sense; the rest is dropped
	aborted bool
}

func (s *streamWriter) Header() http.Header { return s.h }

func (s *streamWriter) WriteHeader(code int) {
	if s.code != 0 || code < 200 {
		return
	}
	s.code = code
	s.header = s.h.Clone()
}

func (s *streamWriter) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.WriteHeader(http.StatusOK)
	}
	// Once the answer stopped making sense, fail the write: the proxy
	// then stops copying and ends the call, rather than reading an
	// upstream that may never stop.
	if s.broken != nil {
		return 0, s.broken
	}
	s.pending = append(s.pending, p...)
	frames, rest, err := splitFrames(s.pending, s.t.maxResp)
	if err != nil {
		s.broken = err
		s.pending = nil
		return 0, err
	}
	for _, f := range frames {
		line, err := s.t.marshalResponse(s.ru, f)
		if err != nil {
			s.broken = err
			return 0, err
		}
		s.start()
		if _, err := s.w.Write(line); err != nil {
			return 0, err // the client is gone: the proxy stops the call
		}
	}
	s.pending = append(s.pending[:0], rest...)
	if len(frames) > 0 {
		_ = s.rc.Flush()
	}
	return len(p), nil
}

func (s *streamWriter) start() {
	if s.started {
		return
	}
	s.started = true
	copyHeaders(s.w.Header(), s.header)
	s.w.Header().Set("Content-Type", "application/x-ndjson")
	s.w.Header().Del("Content-Length")
	s.w.WriteHeader(http.StatusOK)
}

func (s *streamWriter) Flush() {}

// streamError is the last line of a stream that failed after it began.
type streamError struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Message string `json:"message"`
		HTTP    int    `json:"http_status"`
	} `json:"error"`
}

func (t *Transcoder) stream(w http.ResponseWriter, r *http.Request, out *http.Request, ru *rule, next http.Handler) {
	s := &streamWriter{t: t, ru: ru, w: w, rc: http.NewResponseController(w), h: http.Header{}}
	func() {
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				panic(v)
			} else if v != nil {
				s.aborted = true
			}
		}()
		next.ServeHTTP(s, out)
	}()
	code, msg, isGRPC := grpcStatus(s.h)
	switch {
	case s.broken != nil:
		code, msg = 13, s.broken.Error()
	case !isGRPC && s.aborted:
		code, msg = 14, "the gRPC upstream broke off its answer"
	case !isGRPC:
		code, msg = 14, fmt.Sprintf("the upstream answered HTTP %d without a gRPC status: is it a gRPC server (protocol h2 or h2c)?", s.code)
	case code == 0 && len(s.pending) > 0:
		code, msg = 13, fmt.Sprintf("the stream ended inside a message (%d stray bytes)", len(s.pending))
	}
	if !s.started {
		if code == 0 { // a stream of no messages
			s.start()
			httpx.RecordStatus(r, http.StatusOK)
			return
		}
		if !isGRPC || s.broken != nil {
			t.badUpstream(w, r, ru, "%s", msg)
			return
		}
		t.failCall(w, r, ru, code, msg)
		return
	}
	httpx.RecordStatus(r, http.StatusOK)
	if code == 0 {
		return
	}
	t.stats.Failed.Add(1)
	var e streamError
	e.Error.Code, e.Error.Status, e.Error.Message, e.Error.HTTP = code, codeName(code), msg, HTTPStatus(code)
	b, _ := json.Marshal(e)
	_, _ = w.Write(append(b, '\n'))
}
