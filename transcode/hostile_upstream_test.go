package transcode_test

import (
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/transcode"
	"github.com/switchyard/switchyard/transcode/transcodetest"
)

// endless is a gRPC "upstream" that answers 200 application/grpc and then
// writes a frame that claims 16 MiB and never ends (a hostile or broken
// server), until a write fails or 64 MiB are out. It reports how much
// the transcoder took before it stopped the copy.
func endless(written *int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(200)
		hdr := binary.BigEndian.AppendUint32([]byte{0}, 16<<20)
		if _, err := w.Write(hdr); err != nil {
			return
		}
		*written += int64(len(hdr))
		chunk := make([]byte, 32<<10)
		for *written < 64<<20 {
			n, err := w.Write(chunk)
			*written += int64(n)
			if err != nil {
				return
			}
		}
		w.Header().Set("Grpc-Status", "0")
	})
}

// oversized runs a call whose answer the endless upstream makes larger than
// max_response (64 KiB) and returns the status, the body and how many
// bytes the transcoder took from the upstream.
func oversized(t *testing.T, path string) (int, string, int64) {
	t.Helper()
	tc, err := transcode.Load(transcode.Config{DescriptorSet: transcodetest.DescriptorSet,
		Services: []string{transcodetest.Service}, MaxResponse: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var written int64
	srv := httptest.NewServer(tc.Middleware()(endless(&written)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), written
}

// TestTranscodeOversizedAnswerStopsTheCopy: an answer past max_response is
// refused with 502 naming the limit, and the transcoder stops taking the
// upstream's bytes (the proxy then ends the call) instead of reading and
// discarding everything the upstream cares to send until the route's
// timeout.
func TestTranscodeOversizedAnswerStopsTheCopy(t *testing.T) {
	code, b, written := oversized(t, "/v1/shelves/s/books/1")
	if code != 502 || !strings.Contains(b, "larger than max_response") {
		t.Fatalf("%d %s", code, b)
	}
	if written > 1<<20 {
		t.Fatalf("the transcoder took %d bytes of an answer limited to 64 KiB before stopping the copy", written)
	}
}

// TestTranscodeOversizedStreamMessageStopsTheCopy: the same for a
// server-streaming method: a message past max_response ends the stream
// (502 before the first message) and the copy stops.
func TestTranscodeOversizedStreamMessageStopsTheCopy(t *testing.T) {
	code, b, written := oversized(t, "/v1/shelves/w:watch?page_size=3")
	if code != 502 || !strings.Contains(b, "max_response") && !strings.Contains(b, "larger") {
		t.Fatalf("%d %s", code, b)
	}
	if written > 1<<20 {
		t.Fatalf("the transcoder took %d bytes of a stream whose message exceeds 64 KiB before stopping the copy", written)
	}
}
