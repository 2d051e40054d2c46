package client

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
)

func newHTTP(t *testing.T) (*HTTP, *engine.Broker) {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(b))
	t.Cleanup(func() { srv.Close(); b.Close() })
	return &HTTP{Base: srv.URL}, b
}

// TestHTTPNotFoundSaysWhatOnce: the error of an unknown queue names it,
// once, and still matches broker.ErrNotFound (it read
// `queue "rides": not found: not found`).
func TestHTTPNotFoundSaysWhatOnce(t *testing.T) {
	h, _ := newHTTP(t)
	_, err := h.Receive(context.Background(), "rides", broker.ReceiveOptions{})
	if !errors.Is(err, broker.ErrNotFound) || err.Error() != `queue "rides" not found` {
		t.Fatalf("got %q", err)
	}
}

func TestHTTPListInfoRedrive(t *testing.T) {
	ctx := context.Background()
	h, b := newHTTP(t)
	if err := h.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.DeclareQueue(ctx, "q", broker.QueueConfig{MaxDeliveries: 1}); err != nil {
		t.Fatal(err)
	}
	if err := h.DeclareTopic(ctx, "t", broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := h.DeclareStream(ctx, "s", broker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	qs, err := h.Queues(ctx)
	if err != nil || len(qs) != 2 || qs[0] != "q" || qs[1] != "q.dlq" {
		t.Fatalf("queues %v %v", qs, err)
	}
	if ts, err := h.Topics(ctx); err != nil || len(ts) != 1 || ts[0] != "t" {
		t.Fatalf("topics %v %v", ts, err)
	}
	if ss, err := h.Streams(ctx); err != nil || len(ss) != 1 || ss[0] != "s" {
		t.Fatalf("streams %v %v", ss, err)
	}
	h.Publish(ctx, "q", broker.Message{Body: []byte("x")})
	ds, _ := h.Receive(ctx, "q", broker.ReceiveOptions{})
	h.Nack(ctx, "q", 0, ds[0].Receipt) // max_deliveries 1: dead-lettered
	if qi, err := h.QueueInfo(ctx, "q.dlq"); err != nil || qi.Depth != 1 {
		t.Fatalf("dlq info %+v %v", qi, err)
	}
	if n, err := h.Redrive(ctx, "q"); err != nil || n != 1 {
		t.Fatalf("redrive %d %v", n, err)
	}
	if qi, _ := b.Queue("q"); qi.Depth != 1 {
		t.Fatalf("after redrive: %+v", qi)
	}
	if ti, err := h.TopicInfo(ctx, "t"); err != nil || ti.Name != "t" {
		t.Fatalf("topic info %+v %v", ti, err)
	}
	if si, err := h.StreamInfo(ctx, "s"); err != nil || si.Name != "s" {
		t.Fatalf("stream info %+v %v", si, err)
	}
	if _, err := h.StreamInfo(ctx, "nope"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("unknown stream: %v", err)
	}
}

// TestAnswerErrReadsProblemsAndOlderBodies: the client maps an RFC 9457
// problem's code and detail to the broker's errors, and still reads the
// {"error","code"} bodies of older brokers and a status sent as a string.
func TestAnswerErrReadsProblemsAndOlderBodies(t *testing.T) {
	cases := []struct {
		body string
		is   error
		msg  string
	}{
		{`{"type":"about:blank","title":"Not Found","status":404,"detail":"queue \"a\" not found","code":"not_found","error":"queue \"a\" not found"}`, broker.ErrNotFound, `queue "a" not found`},
		{`{"type":"about:blank","title":"Bad Request","status":400,"detail":"bad limit","code":"bad_request"}`, broker.ErrInvalid, "bad limit"},
		{`{"error":"old style","code":"forbidden"}`, broker.ErrForbidden, "old style"},
		{`{"error":"stringy","code":"not_found","status":"404"}`, broker.ErrNotFound, "stringy"},
	}
	for _, tc := range cases {
		err := answerErr("404 Not Found", []byte(tc.body))
		if !errors.Is(err, tc.is) || err.Error() != tc.msg {
			t.Errorf("%s: got %v, want %v %q", tc.body, err, tc.is, tc.msg)
		}
	}
	var full *broker.QueueFullError
	err := answerErr("503", []byte(`{"type":"about:blank","status":503,"detail":"full","code":"queue_full","queue":"q","limit":3}`))
	if !errors.As(err, &full) || full.Queue != "q" || full.Limit != 3 {
		t.Fatalf("queue_full: %v", err)
	}
	// Not a problem of ours: the status and the body are reported.
	for _, body := range []string{`<html>`, `{"detail":"no code"}`, `[]`, ``} {
		if err := answerErr("502 Bad Gateway", []byte(body)); err == nil || !strings.Contains(err.Error(), "502") {
			t.Errorf("%q: %v", body, err)
		}
	}
}
