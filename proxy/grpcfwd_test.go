package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

type trailerServerWriter struct{ http.ResponseWriter }

func (trailerServerWriter) TrailersWithoutLength() {}

type unwrapWriter struct{ http.ResponseWriter }

func (w unwrapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestSendsTrailersUnflushed: forwardGRPC leaves out its last flush only
// under a server that keeps a Content-Length off an unflushed response
// with trailers (httpserver/h2's writer), found through wrappers as
// http.ResponseController finds Flush; net/http's writer needs the flush.
func TestSendsTrailersUnflushed(t *testing.T) {
	rec := httptest.NewRecorder()
	for name, tc := range map[string]struct {
		w    http.ResponseWriter
		want bool
	}{
		"plain":           {rec, false},
		"wrapped plain":   {unwrapWriter{unwrapWriter{rec}}, false},
		"h2":              {trailerServerWriter{rec}, true},
		"wrapped h2":      {unwrapWriter{unwrapWriter{trailerServerWriter{rec}}}, true},
		"h2 too deep":     {deepWrap(trailerServerWriter{rec}, 40), false},
		"wrapped nothing": {unwrapWriter{nil}, false},
	} {
		if got := sendsTrailersUnflushed(tc.w); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

func deepWrap(w http.ResponseWriter, n int) http.ResponseWriter {
	for range n {
		w = unwrapWriter{w}
	}
	return w
}
