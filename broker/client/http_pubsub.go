package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/switchyard/switchyard/broker"
)

var (
	_ TopicClient  = (*HTTP)(nil)
	_ StreamClient = (*HTTP)(nil)
	_ GroupClient  = (*HTTP)(nil)
)

// PublishTopic implements TopicClient with one request per message (in
// order).
func (h *HTTP) PublishTopic(ctx context.Context, topic string, msgs ...broker.Message) ([]broker.TopicResult, error) {
	res := make([]broker.TopicResult, 0, len(msgs))
	msgs = broker.WithTraceContext(ctx, msgs)
	for i := range msgs {
		var r broker.TopicResult
		if err := h.do(ctx, "/v1/topics/"+url.PathEscape(topic)+"/messages", bytes.NewReader(msgs[i].Body), messageHeader(&msgs[i]), &r); err != nil {
			if i > 0 {
				return res, fmt.Errorf("message %d of %d (earlier ones were published): %w", i, len(msgs), err)
			}
			return nil, err
		}
		res = append(res, r)
	}
	return res, nil
}

// sseMaxLine bounds one line of an event stream: a base64 body of the
// largest message size (64 MiB) with its JSON.
const sseMaxLine = 96 << 20

// SubscribeTopic implements TopicClient over the topic's server-sent event
// stream (GET /v1/topics/NAME/events); the broker subscribes before it
// answers, so the subscription is live when this returns. A goroutine
// decodes the stream ahead of Next (up to 64 messages, then TCP's flow
// control holds the broker back); Close ends it.
func (h *HTTP) SubscribeTopic(ctx context.Context, topic string, _ TopicOptions) (TopicSubscription, error) {
	if err := checkDotSegments("/" + topic); err != nil {
		return nil, err
	}
	// The stream outlives ctx: it gets its own context, cancelled by ctx
	// only while subscribing, and by Close.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, strings.TrimSuffix(h.Base, "/")+"/v1/topics/"+url.PathEscape(topic)+"/events", nil)
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	h.authorize(req)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := h.client().Do(req)
	if !stop() {
		// ctx ended while subscribing.
		cancel()
		if err == nil {
			resp.Body.Close()
		}
		return nil, ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: %v", ErrDisconnected, err)
	}
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		cancel()
		return nil, answerErr(resp.Status, data)
	}
	s := &httpTopicSub{topic: topic, cancel: cancel, events: make(chan sseResult, 64), done: make(chan struct{})}
	go s.read(sctx, resp.Body)
	return s, nil
}

// httpTopicSub is a topic subscription over an event stream.
type httpTopicSub struct {
	topic  string
	cancel context.CancelFunc
	events chan sseResult // from read; closed when read returns
	done   chan struct{}  // closed when read returns

	err error // why the subscription ended; owned by Next

	closeOnce sync.Once
	closed    atomic.Bool
}

type sseResult struct {
	m   broker.TopicMessage
	err error
}

// read parses the event stream until it ends or ctx (Close) ends it.
func (s *httpTopicSub) read(ctx context.Context, body io.ReadCloser) {
	defer close(s.done)
	defer close(s.events)
	defer body.Close()
	deliver := func(r sseResult) bool {
		select {
		case s.events <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	err := parseSSE(bufio.NewReaderSize(body, 64<<10), func(event string, data []byte) bool {
		switch event {
		case "", "message":
			var ev broker.TopicEvent
			if err := json.Unmarshal(data, &ev); err != nil {
				deliver(sseResult{err: fmt.Errorf("decoding event of topic %q: %w", s.topic, err)})
				return false
			}
			id, err := strconv.ParseUint(ev.ID, 10, 64)
			if err != nil {
				deliver(sseResult{err: fmt.Errorf("decoding event of topic %q: id %q: %w", s.topic, ev.ID, err)})
				return false
			}
			return deliver(sseResult{m: broker.TopicMessage{ID: id, Body: ev.Body, Headers: ev.Headers, Key: ev.Key, MsgID: ev.MsgID, Time: ev.Time}})
		case "error":
			var end broker.SubscriptionEnded
			if err := json.Unmarshal(data, &end); err != nil || end.Error == "" {
				deliver(sseResult{err: fmt.Errorf("topic %q subscription ended: %q", s.topic, data)})
				return false
			}
			err := codeErr(end.Reason, end.Error)
			if end.Reason == "" {
				err = fmt.Errorf("topic %q subscription ended: %s", s.topic, end.Error)
			}
			deliver(sseResult{err: err})
			return false
		}
		return true // other events are for other clients
	})
	if err != nil && ctx.Err() == nil {
		deliver(sseResult{err: fmt.Errorf("%w: topic %q event stream: %v", ErrDisconnected, s.topic, err)})
	}
}

// errStopped ends parseSSE when the callback asks it to.
var errStopped = errors.New("stopped")

// parseSSE reads server-sent events, calling fn with each event's type and
// data (data lines joined by newlines) until fn returns false (nil), the
// stream ends (io.ErrUnexpectedEOF or the read error) or a line is longer
// than sseMaxLine. Comments, id and retry fields are skipped.
func parseSSE(r *bufio.Reader, fn func(event string, data []byte) bool) error {
	var (
		event   string
		data    []byte
		hasData bool
		line    []byte
	)
	for {
		line = line[:0]
		for {
			chunk, err := r.ReadSlice('\n')
			line = append(line, chunk...)
			if len(line) > sseMaxLine {
				return fmt.Errorf("event stream line above %d bytes", sseMaxLine)
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			if err != nil {
				return err
			}
			break
		}
		l := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(l) == 0 {
			if hasData && !fn(event, data) {
				return nil
			}
			event, data, hasData = "", data[:0], false
			continue
		}
		if l[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(l, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			event = string(value)
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		}
	}
}

// Next implements TopicSubscription.
func (s *httpTopicSub) Next(ctx context.Context) (broker.TopicMessage, error) {
	if s.err == nil && s.closed.Load() {
		s.err = ErrSubscriptionClosed
	}
	if s.err != nil {
		return broker.TopicMessage{}, s.err
	}
	select {
	case r, ok := <-s.events:
		switch {
		case s.closed.Load():
			s.err = ErrSubscriptionClosed
		case !ok:
			s.err = fmt.Errorf("%w: topic %q event stream ended", ErrDisconnected, s.topic)
		case r.err != nil:
			s.err = r.err
		default:
			return r.m, nil
		}
		return broker.TopicMessage{}, s.err
	case <-ctx.Done():
		return broker.TopicMessage{}, ctx.Err()
	}
}

// Close implements TopicSubscription: it ends the event stream and waits
// for its reader.
func (s *httpTopicSub) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.cancel()
		<-s.done
	})
	return nil
}

// Append implements StreamClient with one request per message (in order).
func (h *HTTP) Append(ctx context.Context, stream string, msgs ...broker.Message) ([]uint64, error) {
	offs := make([]uint64, 0, len(msgs))
	msgs = broker.WithTraceContext(ctx, msgs)
	for i := range msgs {
		hdr := http.Header{}
		for k, v := range msgs[i].Headers {
			hdr.Set("Msg-Header-"+k, v)
		}
		var ans broker.OffsetAnswer
		if err := h.do(ctx, "/v1/streams/"+url.PathEscape(stream)+"/messages", bytes.NewReader(msgs[i].Body), hdr, &ans); err != nil {
			if i > 0 {
				return offs, fmt.Errorf("message %d of %d (earlier ones were stored): %w", i, len(msgs), err)
			}
			return nil, err
		}
		offs = append(offs, ans.Offset)
	}
	return offs, nil
}

func readQuery(q url.Values, opts broker.ReadOptions) string {
	if opts.Max > 0 {
		q.Set("max", strconv.Itoa(opts.Max))
	}
	if opts.Wait > 0 {
		q.Set("wait", opts.Wait.String())
	}
	return q.Encode()
}

// ReadStream implements StreamClient (GET /v1/streams/NAME/messages).
func (h *HTTP) ReadStream(ctx context.Context, stream string, from Position, opts broker.ReadOptions) (StreamPage, error) {
	if err := CheckRead(opts); err != nil {
		return StreamPage{}, err
	}
	q := readQuery(url.Values{"from": {from.String()}}, opts)
	var p broker.ReadPage
	if err := h.send(ctx, http.MethodGet, "/v1/streams/"+url.PathEscape(stream)+"/messages?"+q, nil, nil, &p); err != nil {
		return StreamPage{}, err
	}
	return StreamPage{Messages: p.Messages, Next: p.Next}, nil
}

// Fetch implements GroupClient (POST /v1/streams/NAME/groups/GROUP/fetch).
func (h *HTTP) Fetch(ctx context.Context, stream, group string, opts broker.ReadOptions) (StreamPage, error) {
	if err := CheckRead(opts); err != nil {
		return StreamPage{}, err
	}
	path := "/v1/streams/" + url.PathEscape(stream) + "/groups/" + url.PathEscape(group) + "/fetch?" + readQuery(url.Values{}, opts)
	var p broker.ReadPage
	if err := h.do(ctx, path, nil, nil, &p); err != nil {
		return StreamPage{}, err
	}
	return StreamPage{Messages: p.Messages, Next: p.Next}, nil
}

// Commit implements GroupClient (POST /v1/streams/NAME/groups/GROUP/commit).
func (h *HTTP) Commit(ctx context.Context, stream, group string, offset uint64) error {
	path := "/v1/streams/" + url.PathEscape(stream) + "/groups/" + url.PathEscape(group) + "/commit"
	body, err := json.Marshal(broker.OffsetAnswer{Offset: offset})
	if err != nil {
		return err
	}
	return h.do(ctx, path, bytes.NewReader(body), http.Header{"Content-Type": {"application/json"}}, nil)
}
