package wire

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
)

func TestTopicFramesRoundTrip(t *testing.T) {
	sub := TopicSubReq{Topic: "rides", Credit: 64}
	if got, err := DecodeTopicSubReq(AppendTopicSubReq(nil, &sub)); err != nil || got != sub {
		t.Fatalf("TopicSub: %+v %v", got, err)
	}
	res := []broker.TopicResult{{ID: 1, Subscribers: 2, Queues: 1}, {ID: 1 << 40}}
	if got, err := DecodeTopicPubOK(AppendTopicPubOK(nil, res)); err != nil || !reflect.DeepEqual(got, res) {
		t.Fatalf("TopicPubOK: %+v %v", got, err)
	}
	at := time.Date(2026, 11, 22, 4, 10, 27, 123456789, time.UTC)
	ms := []broker.TopicMessage{
		{ID: 7, Body: []byte("hello"), Headers: map[string]string{"kind": "requested"}, Key: "k", MsgID: "m-1", Time: at},
		{ID: 8, Body: []byte{}, Time: at},
	}
	buf := make([]broker.TopicMessage, 1, 4) // decoding appends to a reused buffer
	got, err := DecodeTopicMsgs(buf[:0], AppendTopicMsgs(nil, ms))
	if err != nil || len(got) != 2 || &got[0] != &buf[0] {
		t.Fatalf("TopicMsgs: %+v %v (want 2, decoded into the buffer)", got, err)
	}
	for i := range ms {
		w, g := ms[i], got[i]
		if g.ID != w.ID || string(g.Body) != string(w.Body) || g.Key != w.Key || g.MsgID != w.MsgID ||
			!g.Time.Equal(w.Time) || len(g.Headers) != len(w.Headers) || g.Headers["kind"] != w.Headers["kind"] {
			t.Fatalf("TopicMsgs[%d]: got %+v, want %+v", i, g, w)
		}
	}
}

func TestStreamFramesRoundTrip(t *testing.T) {
	app := AppendReq{Stream: "loc", Msgs: []broker.Message{
		{Body: []byte("a"), Headers: map[string]string{"n": "1"}},
		{Body: []byte{}},
	}}
	gotApp, err := DecodeAppendReq(AppendAppendReq(nil, &app))
	if err != nil || gotApp.Stream != "loc" || len(gotApp.Msgs) != 2 || string(gotApp.Msgs[0].Body) != "a" ||
		gotApp.Msgs[0].Headers["n"] != "1" || len(gotApp.Msgs[1].Body) != 0 {
		t.Fatalf("StreamAppend: %+v %v", gotApp, err)
	}
	offs := []uint64{1, 2, 1 << 50}
	if got, err := DecodeAppendOK(AppendAppendOK(nil, offs)); err != nil || !reflect.DeepEqual(got, offs) {
		t.Fatalf("AppendOK: %v %v", got, err)
	}
	at := time.Date(2026, 11, 22, 4, 0, 0, 5, time.UTC)
	for _, r := range []ReadReq{
		{Stream: "loc", From: FromStart, Max: 100},
		{Stream: "loc", From: FromOffset, Offset: 42, Max: 10, Wait: 5 * time.Second},
		{Stream: "loc", From: FromEnd, Wait: 30 * time.Second},
		{Stream: "loc", From: FromTime, Time: at, Max: 1},
	} {
		got, err := DecodeReadReq(AppendReadReq(nil, &r))
		if err != nil || got.Stream != r.Stream || got.From != r.From || got.Offset != r.Offset || !got.Time.Equal(r.Time) ||
			got.Max != r.Max || got.Wait != r.Wait {
			t.Fatalf("StreamRead %+v: got %+v %v", r, got, err)
		}
	}
	// Times outside what UnixNano can hold are clamped, not garbled.
	if got, err := DecodeReadReq(AppendReadReq(nil, &ReadReq{Stream: "s", From: FromTime, Time: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)})); err != nil || got.Time.UnixNano() != 0 {
		t.Fatalf("time before 1970: %+v %v", got, err)
	}
	f := FetchReq{Stream: "loc", Group: "billing", Max: 100, Wait: time.Second}
	if got, err := DecodeFetchReq(AppendFetchReq(nil, &f)); err != nil || got != f {
		t.Fatalf("GroupFetch: %+v %v", got, err)
	}
	c := CommitReq{Stream: "loc", Group: "billing", Offset: 3}
	if got, err := DecodeCommitReq(AppendCommitReq(nil, &c)); err != nil || got != c {
		t.Fatalf("GroupCommit: %+v %v", got, err)
	}
	if got, err := DecodeCommitOK(AppendUvarint(nil, 3)); err != nil || got != 3 {
		t.Fatalf("CommitOK: %d %v", got, err)
	}
	page := StreamPage{Next: 4, Messages: []broker.StreamMessage{
		{Offset: 2, Time: at, Body: []byte("b"), Headers: map[string]string{"n": "2"}},
		{Offset: 3, Time: at, Body: []byte("c")},
	}}
	var back StreamPage
	if err := DecodeStreamMsgs(&back, AppendStreamMsgs(nil, &page)); err != nil || back.Next != 4 || len(back.Messages) != 2 ||
		back.Messages[0].Offset != 2 || string(back.Messages[1].Body) != "c" || back.Messages[0].Headers["n"] != "2" ||
		!back.Messages[0].Time.Equal(at) {
		t.Fatalf("StreamMsgs: %+v %v", back, err)
	}
	var empty StreamPage
	if err := DecodeStreamMsgs(&empty, AppendStreamMsgs(nil, &StreamPage{Next: 9})); err != nil || empty.Next != 9 || len(empty.Messages) != 0 {
		t.Fatalf("empty StreamMsgs: %+v %v", empty, err)
	}
}

// TestMalformedPubSubFrames checks that the new decoders reject truncated,
// padded and inconsistent bodies with ErrMalformed.
func TestMalformedPubSubFrames(t *testing.T) {
	at := time.Unix(100, 0)
	valid := map[string][]byte{
		"TopicSub":     AppendTopicSubReq(nil, &TopicSubReq{Topic: "t", Credit: 3}),
		"TopicPubOK":   AppendTopicPubOK(nil, []broker.TopicResult{{ID: 1, Subscribers: 1}}),
		"TopicMsgs":    AppendTopicMsgs(nil, []broker.TopicMessage{{ID: 1, Body: []byte("x"), Headers: map[string]string{"a": "b"}, Time: at}}),
		"StreamAppend": AppendAppendReq(nil, &AppendReq{Stream: "s", Msgs: []broker.Message{{Body: []byte("x")}}}),
		"AppendOK":     AppendAppendOK(nil, []uint64{1, 2}),
		"StreamRead":   AppendReadReq(nil, &ReadReq{Stream: "s", From: FromTime, Time: at, Max: 1}),
		"GroupFetch":   AppendFetchReq(nil, &FetchReq{Stream: "s", Group: "g", Max: 1}),
		"StreamMsgs":   AppendStreamMsgs(nil, &StreamPage{Next: 2, Messages: []broker.StreamMessage{{Offset: 1, Time: at, Body: []byte("x")}}}),
		"GroupCommit":  AppendCommitReq(nil, &CommitReq{Stream: "s", Group: "g", Offset: 1}),
		"CommitOK":     AppendCommitOK(nil, 1),
		"Credit":       AppendCredit(nil, 5),
	}
	decode := map[string]func([]byte) error{
		"TopicSub":     func(b []byte) error { _, err := DecodeTopicSubReq(b); return err },
		"TopicPubOK":   func(b []byte) error { _, err := DecodeTopicPubOK(b); return err },
		"TopicMsgs":    func(b []byte) error { _, err := DecodeTopicMsgs(nil, b); return err },
		"StreamAppend": func(b []byte) error { _, err := DecodeAppendReq(b); return err },
		"AppendOK":     func(b []byte) error { _, err := DecodeAppendOK(b); return err },
		"StreamRead":   func(b []byte) error { _, err := DecodeReadReq(b); return err },
		"GroupFetch":   func(b []byte) error { _, err := DecodeFetchReq(b); return err },
		"StreamMsgs":   func(b []byte) error { var p StreamPage; return DecodeStreamMsgs(&p, b) },
		"GroupCommit":  func(b []byte) error { _, err := DecodeCommitReq(b); return err },
		"CommitOK":     func(b []byte) error { _, err := DecodeCommitOK(b); return err },
		"Credit":       func(b []byte) error { _, err := DecodeCredit(b); return err },
	}
	for name, body := range valid {
		t.Run(name, func(t *testing.T) {
			dec := decode[name]
			if err := dec(body); err != nil {
				t.Fatalf("valid body: %v", err)
			}
			for n := range len(body) {
				if err := dec(body[:n]); !errors.Is(err, ErrMalformed) {
					t.Errorf("truncated to %d of %d bytes: %v, want ErrMalformed", n, len(body), err)
				}
			}
			if err := dec(append(body[:len(body):len(body)], 0)); !errors.Is(err, ErrMalformed) {
				t.Errorf("trailing byte: %v, want ErrMalformed", err)
			}
		})
	}
	bad := []struct {
		name string
		err  error
	}{
		{"unknown from", func() error {
			_, err := DecodeReadReq(append(AppendString(nil, "s"), 9, 0, 0, 0))
			return err
		}()},
		{"position with from=start", func() error {
			_, err := DecodeReadReq(append(AppendString(nil, "s"), byte(FromStart), 5, 0, 0))
			return err
		}()},
		{"time above int64", func() error {
			b := append(AppendString(nil, "s"), byte(FromTime))
			b = AppendUvarint(b, 1<<63)
			_, err := DecodeReadReq(append(b, 0, 0))
			return err
		}()},
		{"huge message count", func() error {
			_, err := DecodeTopicMsgs(nil, AppendUvarint(nil, maxBatch))
			return err
		}()},
		{"count above batch limit", func() error {
			_, err := DecodeAppendReq(AppendUvarint(AppendString(nil, "s"), maxBatch+1))
			return err
		}()},
		{"header count beyond body", func() error {
			var p StreamPage
			return DecodeStreamMsgs(&p, []byte{1, 1, 1, 1, 100, 0})
		}()},
	}
	for _, c := range bad {
		if !errors.Is(c.err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", c.name, c.err)
		}
	}
}

// TestPushPathAllocations checks that encoding pushed messages into a
// reused buffer, and decoding them into a reused slice, allocate nothing
// for messages without headers, ids or keys.
func TestPushPathAllocations(t *testing.T) {
	ms := make([]broker.TopicMessage, 64)
	page := StreamPage{Next: 65, Messages: make([]broker.StreamMessage, 64)}
	for i := range ms {
		ms[i] = broker.TopicMessage{ID: uint64(i + 1), Body: make([]byte, 256), Time: time.Unix(1700000000, int64(i))}
		page.Messages[i] = broker.StreamMessage{Offset: uint64(i + 1), Body: make([]byte, 256), Time: time.Unix(1700000000, int64(i))}
	}
	buf := AppendStreamMsgs(AppendTopicMsgs(nil, ms), &page)
	topicBody := AppendTopicMsgs(nil, ms)
	streamBody := AppendStreamMsgs(nil, &page)
	dst := make([]broker.TopicMessage, 0, len(ms))
	back := StreamPage{Messages: make([]broker.StreamMessage, 0, len(ms))}
	var err error
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendTopicMsgs(buf[:0], ms)
		buf = AppendStreamMsgs(buf[:0], &page)
		dst, err = DecodeTopicMsgs(dst[:0], topicBody)
		back.Messages = back.Messages[:0]
		if err == nil {
			err = DecodeStreamMsgs(&back, streamBody)
		}
	}); n != 0 {
		t.Fatalf("%.1f allocations per encode and decode, want 0", n)
	}
	if err != nil || len(dst) != len(ms) || len(back.Messages) != len(ms) {
		t.Fatalf("decoded %d topic and %d stream messages: %v", len(dst), len(back.Messages), err)
	}
}
