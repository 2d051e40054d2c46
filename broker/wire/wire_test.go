package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
)

func TestFrameRoundTrip(t *testing.T) {
	req := PubReq{Queue: "q", NoWait: true, Msgs: []broker.Message{
		{ID: "i", Key: "k", Delay: 2 * time.Second, TTL: time.Minute, Headers: map[string]string{"a": "b"}, Body: []byte("hello")},
		{Body: []byte{}},
	}}
	var buf []byte
	buf, start := Begin(buf, Pub, 7)
	buf = End(AppendPubReq(buf, &req), start)
	buf = AppendFrame(buf, Ping, 8, nil)
	r := NewReader(bytes.NewReader(buf), 0)
	f, err := r.ReadFrame()
	if err != nil || f.Type != Pub || f.ID != 7 {
		t.Fatalf("frame %+v %v", f, err)
	}
	got, err := DecodePubReq(f.Body)
	if err != nil || got.Queue != "q" || !got.NoWait || len(got.Msgs) != 2 || got.Msgs[0].Delay != 2*time.Second ||
		got.Msgs[0].Headers["a"] != "b" || string(got.Msgs[0].Body) != "hello" {
		t.Fatalf("decoded %+v %v", got, err)
	}
	if f, err := r.ReadFrame(); err != nil || f.Type != Ping || f.ID != 8 {
		t.Fatalf("second frame %+v %v", f, err)
	}
	if _, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
	// Oversized and undersized length fields are rejected.
	for _, n := range []uint32{0, 4, MaxFrame + 1} {
		b := []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 1, 0, 0, 0, 1}
		if _, err := NewReader(bytes.NewReader(b), 0).ReadFrame(); !errors.Is(err, ErrMalformed) {
			t.Errorf("length %d: %v", n, err)
		}
	}
	ds := []broker.Delivery{{Seq: 3, Receipt: "r", MsgID: "m", Key: "k", Deliveries: 2, PublishedAt: time.Unix(0, 5), Headers: map[string]string{"x": "y"}, Body: []byte("b")}}
	back, err := DecodeMsgs(AppendMsgs(nil, ds))
	if err != nil || len(back) != 1 || back[0].Receipt != "r" || back[0].Deliveries != 2 || back[0].PublishedAt.UnixNano() != 5 || string(back[0].Body) != "b" {
		t.Fatalf("msgs %+v %v", back, err)
	}
	e, err := DecodeErr(AppendErr(nil, &Error{Code: "queue_full", Message: "m", Queue: "q", Limit: 3}))
	if err != nil || e.Limit != 3 || e.Queue != "q" {
		t.Fatalf("err %+v %v", e, err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, Pub, 1, AppendPubReq(nil, &PubReq{Queue: "q", Msgs: []broker.Message{{Body: []byte("x"), Headers: map[string]string{"a": "b"}}}})))
	f.Add(AppendFrame(nil, Ack, 2, AppendSettle(nil, Ack, &SettleReq{Queue: "q", Receipts: []string{"1.2.3"}})))
	f.Add(AppendFrame(nil, Msgs, 3, AppendMsgs(nil, []broker.Delivery{{Seq: 1, Body: []byte("x")}})))
	at := time.Unix(1700000000, 5)
	f.Add(AppendFrame(nil, TopicSub, 4, AppendTopicSubReq(nil, &TopicSubReq{Topic: "t", Credit: 16})))
	f.Add(AppendFrame(nil, TopicPubOK, 5, AppendTopicPubOK(nil, []broker.TopicResult{{ID: 1, Subscribers: 2, Queues: 1}})))
	f.Add(AppendFrame(nil, TopicMsgs, 6, AppendTopicMsgs(nil, []broker.TopicMessage{{ID: 1, MsgID: "m", Key: "k", Time: at, Headers: map[string]string{"a": "b"}, Body: []byte("x")}})))
	f.Add(AppendFrame(nil, StreamAppend, 7, AppendAppendReq(nil, &AppendReq{Stream: "s", Msgs: []broker.Message{{Body: []byte("x"), Headers: map[string]string{"a": "b"}}}})))
	f.Add(AppendFrame(nil, AppendOK, 8, AppendAppendOK(nil, []uint64{1, 2})))
	f.Add(AppendFrame(nil, StreamRead, 9, AppendReadReq(nil, &ReadReq{Stream: "s", From: FromTime, Time: at, Max: 10, Wait: time.Second})))
	f.Add(AppendFrame(nil, StreamRead, 10, AppendReadReq(nil, &ReadReq{Stream: "s", From: FromOffset, Offset: 3})))
	f.Add(AppendFrame(nil, GroupFetch, 11, AppendFetchReq(nil, &FetchReq{Stream: "s", Group: "g", Max: 10})))
	f.Add(AppendFrame(nil, StreamMsgs, 12, AppendStreamMsgs(nil, &StreamPage{Next: 2, Messages: []broker.StreamMessage{{Offset: 1, Time: at, Body: []byte("x")}}})))
	f.Add(AppendFrame(nil, GroupCommit, 13, AppendCommitReq(nil, &CommitReq{Stream: "s", Group: "g", Offset: 2})))
	f.Add(AppendFrame(nil, Declare, 14, AppendDeclareReq(nil, &DeclareReq{Kind: KindQueue, Name: "q", Settings: []byte(`{"max_deliveries":3,"overflow":"block"}`)})))
	f.Add(AppendFrame(nil, Declare, 15, AppendDeclareReq(nil, &DeclareReq{Kind: KindStream, Name: "s"})))
	f.Add(AppendFrame(nil, Delete, 16, AppendDeleteReq(nil, &DeleteReq{Kind: KindTopic, Name: "t"})))
	f.Add(AppendFrame(nil, DeclareOK, 17, nil))
	f.Add(AppendFrame(nil, Declare, 18, AppendDeclareReq(nil, &DeclareReq{Kind: KindTopic, Name: "t", IfAbsent: true})))
	f.Add(AppendFrame(nil, Bind, 19, AppendBindReq(nil, &BindReq{Op: OpBind, Topic: "t", Queue: "t.g", CreateQueue: true})))
	f.Add(AppendFrame(nil, Bind, 20, AppendBindReq(nil, &BindReq{Op: OpUnbind, Topic: "t", Queue: "q\x00\xff"})))
	f.Add(AppendFrame(nil, BindOK, 21, AppendBindOK(nil, true)))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b), 1<<20)
		for {
			fr, err := r.ReadFrame()
			if err != nil {
				return
			}
			// Every decoder must fail cleanly, never panic.
			DecodePubReq(fr.Body)
			DecodePubOK(fr.Body)
			DecodeRecvReq(fr.Body)
			DecodeMsgs(fr.Body)
			DecodeSettle(Ack, fr.Body)
			DecodeSettle(Nack, fr.Body)
			DecodeAckOK(fr.Body)
			DecodeErr(fr.Body)
			DecodeTopicSubReq(fr.Body)
			DecodeTopicPubOK(fr.Body)
			DecodeTopicMsgs(nil, fr.Body)
			DecodeAppendReq(fr.Body)
			DecodeAppendOK(fr.Body)
			DecodeReadReq(fr.Body)
			DecodeFetchReq(fr.Body)
			var p StreamPage
			DecodeStreamMsgs(&p, fr.Body)
			DecodeCommitReq(fr.Body)
			DecodeCommitOK(fr.Body)
			DecodeDeclareReq(fr.Body)
			DecodeDeleteReq(fr.Body)
			if r, err := DecodeBindReq(fr.Body); err == nil {
				// What decodes survives a round trip.
				if again, err := DecodeBindReq(AppendBindReq(nil, &r)); err != nil || again != r {
					t.Fatalf("bind %+v round-trips as %+v, %v", r, again, err)
				}
			}
			DecodeBindOK(fr.Body)
		}
	})
}

// The size estimates must cover what is appended, or buffers grow again.
func TestSizeEstimatesCoverEncoding(t *testing.T) {
	msgs := []broker.Message{{Body: make([]byte, 300), ID: "id-1", Key: "k", Headers: map[string]string{"a": "b", "trace": "x"}},
		{Body: nil}, {Body: make([]byte, 70000), Delay: 1 << 40}}
	req := &PubReq{Queue: "q", Msgs: msgs}
	if got, est := len(AppendPubReq(nil, req)), PubReqSize(req); got > est {
		t.Fatalf("PubReq: %d bytes encoded, estimate %d", got, est)
	}
	ds := []broker.Delivery{{Seq: 1 << 60, Receipt: "r-123", MsgID: "m", Key: "k", Body: make([]byte, 1000),
		Headers: map[string]string{"x-dead-letter-reason": "max_deliveries"}, Deliveries: 1 << 20}, {}}
	if got, est := len(AppendMsgs(nil, ds)), MsgsSize(ds); got > est {
		t.Fatalf("Msgs: %d bytes encoded, estimate %d", got, est)
	}
}
