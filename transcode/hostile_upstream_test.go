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

// TestTranscodeOversizedAnswerStopsTheCopy: an answer past max_response is
// refused with 502 naming the limit, and the transcoder stops taking the
// upstream's bytes (the proxy then ends the call) instead of reading and
// discarding everything the upstream cares to send until the route's
// timeout.
func TestTranscodeOversizedAnswerStopsTheCopy(t *testing.T) {
	tc, err := transcode.Load(transcode.Config{DescriptorSet: transcodetest.DescriptorSet,
		Services: []string{transcodetest.Service}, MaxResponse: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var written int64
	srv := httptest.NewServer(tc.Middleware()(endless(&written)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/shelves/s/books/1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.Contains(string(b), "larger than max_response") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if written > 1<<20 {
		t.Fatalf("the transcoder took %d bytes of an answer limited to 64 KiB before stopping the copy", written)
	}
}

// TestTranscodeOversizedStreamMessageStopsTheCopy: the same for a
// server-streaming method: a message past max_response ends the stream
// (502 before the first message) and the copy stops.
func TestTranscodeOversizedStreamMessageStopsTheCopy(t *testing.T) {
	tc, err := transcode.Load(transcode.Config{DescriptorSet: transcodetest.DescriptorSet,
		Services: []string{transcodetest.Service}, MaxResponse: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var written int64
	srv := httptest.NewServer(tc.Middleware()(endless(&written)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/shelves/w:watch?page_size=3")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.Contains(string(b), "max_response") && !strings.Contains(string(b), "larger") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if written > 1<<20 {
		t.Fatalf("the transcoder took %d bytes of a stream whose message exceeds 64 KiB before stopping the copy", written)
	}
}
