package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/httpx"
)

// HTTP is a Client, TopicClient, StreamClient, GroupClient and Admin over the
// broker's HTTP API (see docs/broker.md), for places where the native
// protocol is not reachable. Topic subscriptions are server-sent event
// streams: a Client with a Timeout ends them after that time.
type HTTP struct {
	// Base is the API address, e.g. "http://127.0.0.1:7401".
	Base string
	// Client sends the requests. Default http.DefaultClient. For TLS, a
	// client whose transport has the TLS config (see LoadTLS).
	Client *http.Client
	// Credentials go with every request: Authorization: Bearer TOKEN, or
	// Basic with the user and password. Default none.
	Credentials Credentials
}

var _ Client = (*HTTP)(nil)

func (h *HTTP) client() *http.Client {
	if h.Client != nil {
		return h.Client
	}
	return http.DefaultClient
}

// checkDotSegments refuses a request path with a "." or ".." segment:
// a queue, topic, stream or group named "." or ".." (url.PathEscape
// leaves them as they are), which no broker name is, but which the
// server's router cleans away and redirects, so that "info queue ." read
// the queue list as an empty queue and "declare --if-absent" said it
// exists.
func checkDotSegments(path string) error {
	p, _, _ := strings.Cut(path, "?")
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%w: name %q: not a broker name (1-200 of letters, digits, '_', '.', '-', not starting with '.' or '-')", broker.ErrInvalid, seg)
		}
	}
	return nil
}

// do sends a POST and decodes a 2xx JSON answer into out, or turns an
// error answer into the broker's error values.
func (h *HTTP) do(ctx context.Context, path string, body io.Reader, hdr http.Header, out any) error {
	return h.send(ctx, http.MethodPost, path, body, hdr, out)
}

// send is do with any method. A broker that cannot be reached (or whose
// answer is cut) is ErrDisconnected. An out of type *[]byte gets the
// answer's bytes undecoded.
func (h *HTTP) send(ctx context.Context, method, path string, body io.Reader, hdr http.Header, out any) error {
	if err := checkDotSegments(path); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(h.Base, "/")+path, body)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	h.authorize(req)
	resp, err := h.client().Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDisconnected, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%w: reading answer: %v", ErrDisconnected, err)
	}
	if resp.StatusCode/100 != 2 {
		return answerErr(resp.Status, data)
	}
	if pg, ok := out.(*pageAnswer); ok {
		pg.body, pg.next = data, httpx.NextLink(resp.Header.Values("Link"))
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding broker answer: %w", err)
		}
	}
	return nil
}

// pageAnswer is a page of a listing: the body, and the target of its
// Link rel="next" ("" on the last page).
type pageAnswer struct {
	body []byte
	next string
}

// answerErr turns an error answer (status line and JSON body) into the
// broker's error values. The body is RFC 9457 problem details with the
// broker's code; its detail is the message (error, which brokers before
// problem details sent alone, when there is no detail). Only the members
// it needs are read, so a status sent as a string by some older server
// does not hide the code.
func answerErr(status string, data []byte) error {
	var e struct {
		Detail string `json:"detail"`
		Code   string `json:"code"`
		Error  string `json:"error"`
		Queue  string `json:"queue"`
		Limit  int    `json:"limit"`
	}
	if json.Unmarshal(data, &e) != nil || e.Code == "" {
		return fmt.Errorf("broker answered %s: %q", status, data)
	}
	if e.Code == broker.CodeQueueFull {
		return &broker.QueueFullError{Queue: e.Queue, Limit: e.Limit}
	}
	msg := e.Detail
	if msg == "" {
		msg = e.Error
	}
	return codeErr(e.Code, msg)
}

// codeErr maps an error code of the API to an error that errors.Is
// recognises like the broker's own.
func codeErr(code, msg string) error {
	if err := broker.CodeError(code, msg); err != nil {
		return &answerError{msg: msg, err: err}
	}
	return fmt.Errorf("broker error %s: %s", code, msg)
}

// Publish implements Publisher with one request per message (in order).
func (h *HTTP) Publish(ctx context.Context, queue string, msgs ...broker.Message) ([]broker.PublishResult, error) {
	res := make([]broker.PublishResult, 0, len(msgs))
	msgs = broker.WithTraceContext(ctx, msgs)
	for i, m := range msgs {
		hdr := messageHeader(&m)
		var ans broker.PublishAnswer
		path := "/v1/queues/" + url.PathEscape(queue) + "/messages"
		var raw []byte
		err := h.do(ctx, path, bytes.NewReader(m.Body), hdr, &raw)
		if err == nil && json.Unmarshal(raw, &ans) != nil {
			err = h.notBroker(http.MethodPost, path, `{"id":"N",...}`, raw)
		}
		if err != nil {
			if i > 0 {
				return res, fmt.Errorf("message %d of %d (earlier ones were stored): %w", i, len(msgs), err)
			}
			return nil, err
		}
		seq, err := strconv.ParseUint(ans.ID, 10, 64)
		if err != nil {
			return res, h.notBroker(http.MethodPost, path, `{"id":"N",...}`, raw)
		}
		res = append(res, broker.PublishResult{Seq: seq, Duplicate: ans.Duplicate})
	}
	return res, nil
}

// messageHeader carries a message's id, key, delay, ttl and headers as
// the HTTP API's request headers.
func messageHeader(m *broker.Message) http.Header {
	hdr := http.Header{}
	if m.ID != "" {
		hdr.Set("Msg-Id", m.ID)
	}
	if m.Key != "" {
		hdr.Set("Msg-Key", m.Key)
	}
	if m.Delay > 0 {
		hdr.Set("Delay", m.Delay.String())
	}
	if m.TTL > 0 {
		hdr.Set("TTL", m.TTL.String())
	}
	for k, v := range m.Headers {
		hdr.Set("Msg-Header-"+k, v)
	}
	return hdr
}

// Status returns the state of message seq of the queue (GET
// /v1/queues/NAME/messages/ID); an unknown queue is broker.ErrNotFound.
func (h *HTTP) Status(ctx context.Context, queue string, seq uint64) (broker.MessageStatus, error) {
	var st broker.MessageStatus
	path := "/v1/queues/" + url.PathEscape(queue) + "/messages/" + strconv.FormatUint(seq, 10)
	err := h.send(ctx, http.MethodGet, path, nil, nil, &st)
	return st, err
}

// Receive implements Consumer.
func (h *HTTP) Receive(ctx context.Context, queue string, opts broker.ReceiveOptions) ([]broker.Delivery, error) {
	q := url.Values{}
	if opts.Max > 0 {
		q.Set("max", strconv.Itoa(opts.Max))
	}
	if opts.Wait > 0 {
		q.Set("wait", opts.Wait.String())
	}
	if opts.Visibility > 0 {
		q.Set("visibility", opts.Visibility.String())
	}
	if opts.AutoAck {
		q.Set("auto_ack", "true")
	}
	var ans []broker.ReceivedMessage
	if err := h.do(ctx, "/v1/queues/"+url.PathEscape(queue)+"/receive?"+q.Encode(), nil, nil, &ans); err != nil {
		return nil, err
	}
	out := make([]broker.Delivery, len(ans))
	for i, d := range ans {
		seq, _ := strconv.ParseUint(d.ID, 10, 64)
		out[i] = broker.Delivery{Seq: seq, Receipt: d.Receipt, Body: d.Body, Headers: d.Headers, Key: d.Key,
			MsgID: d.MsgID, Deliveries: d.Deliveries, PublishedAt: d.Published}
	}
	return out, nil
}

// Ack implements Consumer.
func (h *HTTP) Ack(ctx context.Context, queue string, receipts ...string) (broker.AckResult, error) {
	return h.settle(ctx, queue, "ack", 0, receipts)
}

// Nack implements Consumer.
func (h *HTTP) Nack(ctx context.Context, queue string, delay time.Duration, receipts ...string) (broker.AckResult, error) {
	return h.settle(ctx, queue, "nack", delay, receipts)
}

func (h *HTTP) settle(ctx context.Context, queue, op string, delay time.Duration, receipts []string) (broker.AckResult, error) {
	req := broker.SettleRequest{Receipts: receipts}
	if op == "nack" {
		req.Delay = delay.String()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return broker.AckResult{}, err
	}
	var res broker.AckResult
	err = h.do(ctx, "/v1/queues/"+url.PathEscape(queue)+"/"+op, bytes.NewReader(body), http.Header{"Content-Type": {"application/json"}}, &res)
	return res, err
}

// Close releases idle connections of the default transport's pool use.
func (h *HTTP) Close() error {
	h.client().CloseIdleConnections()
	return nil
}

// answerError is an error the broker answered: its message as the broker
// worded it (`queue "rides" not found`, not followed by the sentinel's own
// text again), matching the broker's error value with errors.Is.
type answerError struct {
	msg string
	err error // from broker.CodeError: wraps the sentinel
}

func (e *answerError) Error() string { return e.msg }
func (e *answerError) Unwrap() error { return e.err }

// authorize sets the request's Authorization from h.Credentials.
func (h *HTTP) authorize(req *http.Request) {
	switch c := h.Credentials; {
	case c.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.Token)
	case c.User != "" || c.Password != "":
		req.SetBasicAuth(c.User, c.Password)
	}
}
