package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/wire"
)

var (
	_ Admin = (*Conn)(nil)
	_ Admin = (*HTTP)(nil)
)

// DeclareQueue implements Admin with a Declare frame.
func (c *Conn) DeclareQueue(ctx context.Context, name string, cfg broker.QueueConfig) error {
	return c.declare(ctx, wire.KindQueue, name, cfg)
}

// DeleteQueue implements Admin with a Delete frame.
func (c *Conn) DeleteQueue(ctx context.Context, name string) error {
	return c.delete(ctx, wire.KindQueue, name)
}

// DeclareTopic implements Admin with a Declare frame.
func (c *Conn) DeclareTopic(ctx context.Context, name string, cfg broker.TopicConfig) error {
	return c.declare(ctx, wire.KindTopic, name, cfg)
}

// DeleteTopic implements Admin with a Delete frame.
func (c *Conn) DeleteTopic(ctx context.Context, name string) error {
	return c.delete(ctx, wire.KindTopic, name)
}

// DeclareTopicIfAbsent creates the topic with cfg if it does not exist
// and leaves an existing one as it is, its bound queues and settings (a
// Declare frame with the if-absent flag): what a service declaring the
// topics it uses wants. Brokers older than the flag answer
// broker.ErrInvalid.
func (c *Conn) DeclareTopicIfAbsent(ctx context.Context, name string, cfg broker.TopicConfig) error {
	return c.declareFlags(ctx, wire.KindTopic, name, cfg, true)
}

// DeclareQueueIfAbsent is DeclareTopicIfAbsent for a queue: an existing
// queue keeps its settings.
func (c *Conn) DeclareQueueIfAbsent(ctx context.Context, name string, cfg broker.QueueConfig) error {
	return c.declareFlags(ctx, wire.KindQueue, name, cfg, true)
}

// BindQueue implements Admin with a Bind frame.
func (c *Conn) BindQueue(ctx context.Context, topic, queue string, opts broker.BindOptions) (bool, error) {
	return c.bind(ctx, &wire.BindReq{Op: wire.OpBind, Topic: topic, Queue: queue, CreateQueue: opts.CreateQueue})
}

// UnbindQueue implements Admin with a Bind frame.
func (c *Conn) UnbindQueue(ctx context.Context, topic, queue string) (bool, error) {
	return c.bind(ctx, &wire.BindReq{Op: wire.OpUnbind, Topic: topic, Queue: queue})
}

func (c *Conn) bind(ctx context.Context, req *wire.BindReq) (bool, error) {
	r, err := c.roundTripSize(ctx, wire.Bind, len(req.Topic)+len(req.Queue)+16, func(b []byte) []byte { return wire.AppendBindReq(b, req) })
	if err != nil {
		return false, err
	}
	if err := expect(r, wire.BindOK); err != nil {
		return false, err
	}
	return wire.DecodeBindOK(r.body)
}

// DeclareStream implements Admin with a Declare frame.
func (c *Conn) DeclareStream(ctx context.Context, name string, cfg broker.StreamConfig) error {
	return c.declare(ctx, wire.KindStream, name, cfg)
}

// DeleteStream implements Admin with a Delete frame.
func (c *Conn) DeleteStream(ctx context.Context, name string) error {
	return c.delete(ctx, wire.KindStream, name)
}

// declare sends cfg as the JSON the HTTP API accepts; the broker
// validates it.
func (c *Conn) declare(ctx context.Context, k wire.Kind, name string, cfg any) error {
	return c.declareFlags(ctx, k, name, cfg, false)
}

func (c *Conn) declareFlags(ctx context.Context, k wire.Kind, name string, cfg any, ifAbsent bool) error {
	settings, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding %s %q settings: %w", k, name, err)
	}
	req := wire.DeclareReq{Kind: k, Name: name, Settings: settings, IfAbsent: ifAbsent}
	r, err := c.roundTripSize(ctx, wire.Declare, len(name)+len(settings)+16, func(b []byte) []byte { return wire.AppendDeclareReq(b, &req) })
	if err != nil {
		return err
	}
	return expect(r, wire.DeclareOK)
}

func (c *Conn) delete(ctx context.Context, k wire.Kind, name string) error {
	req := wire.DeleteReq{Kind: k, Name: name}
	r, err := c.roundTrip(ctx, wire.Delete, func(b []byte) []byte { return wire.AppendDeleteReq(b, &req) })
	if err != nil {
		return err
	}
	return expect(r, wire.DeleteOK)
}

// DeclareQueue implements Admin (PUT /v1/queues/NAME).
func (h *HTTP) DeclareQueue(ctx context.Context, name string, cfg broker.QueueConfig) error {
	return h.declare(ctx, "/v1/queues/", name, cfg, false)
}

// DeleteQueue implements Admin (DELETE /v1/queues/NAME).
func (h *HTTP) DeleteQueue(ctx context.Context, name string) error {
	return h.send(ctx, http.MethodDelete, "/v1/queues/"+url.PathEscape(name), nil, nil, nil)
}

// DeclareTopic implements Admin (PUT /v1/topics/NAME).
func (h *HTTP) DeclareTopic(ctx context.Context, name string, cfg broker.TopicConfig) error {
	return h.declare(ctx, "/v1/topics/", name, cfg, false)
}

// DeleteTopic implements Admin (DELETE /v1/topics/NAME).
func (h *HTTP) DeleteTopic(ctx context.Context, name string) error {
	return h.send(ctx, http.MethodDelete, "/v1/topics/"+url.PathEscape(name), nil, nil, nil)
}

// BindQueue implements Admin (PUT /v1/topics/TOPIC/queues/QUEUE, with
// ?create=1 for opts.CreateQueue).
func (h *HTTP) BindQueue(ctx context.Context, topic, queue string, opts broker.BindOptions) (bool, error) {
	path := "/v1/topics/" + url.PathEscape(topic) + "/queues/" + url.PathEscape(queue)
	if opts.CreateQueue {
		path += "?create=1"
	}
	var a broker.BindAnswer
	if err := h.send(ctx, http.MethodPut, path, nil, nil, &a); err != nil {
		return false, err
	}
	return a.Changed, nil
}

// UnbindQueue implements Admin (DELETE /v1/topics/TOPIC/queues/QUEUE).
func (h *HTTP) UnbindQueue(ctx context.Context, topic, queue string) (bool, error) {
	var a broker.BindAnswer
	if err := h.send(ctx, http.MethodDelete, "/v1/topics/"+url.PathEscape(topic)+"/queues/"+url.PathEscape(queue), nil, nil, &a); err != nil {
		return false, err
	}
	return a.Changed, nil
}

// DeclareStream implements Admin (PUT /v1/streams/NAME).
func (h *HTTP) DeclareStream(ctx context.Context, name string, cfg broker.StreamConfig) error {
	return h.declare(ctx, "/v1/streams/", name, cfg, false)
}

// DeleteStream implements Admin (DELETE /v1/streams/NAME).
func (h *HTTP) DeleteStream(ctx context.Context, name string) error {
	return h.send(ctx, http.MethodDelete, "/v1/streams/"+url.PathEscape(name), nil, nil, nil)
}

// DeclareQueueIfAbsent is Conn.DeclareQueueIfAbsent over HTTP
// (PUT /v1/queues/NAME?if_absent=1): an existing queue keeps its settings.
// Brokers older than if_absent ignore the query and replace them.
func (h *HTTP) DeclareQueueIfAbsent(ctx context.Context, name string, cfg broker.QueueConfig) error {
	return h.declare(ctx, "/v1/queues/", name, cfg, true)
}

// DeclareTopicIfAbsent is Conn.DeclareTopicIfAbsent over HTTP
// (PUT /v1/topics/NAME?if_absent=1): an existing topic keeps its settings
// and bound queues.
func (h *HTTP) DeclareTopicIfAbsent(ctx context.Context, name string, cfg broker.TopicConfig) error {
	return h.declare(ctx, "/v1/topics/", name, cfg, true)
}

// DeclareStreamIfAbsent (PUT /v1/streams/NAME?if_absent=1): an existing
// stream keeps its settings.
func (h *HTTP) DeclareStreamIfAbsent(ctx context.Context, name string, cfg broker.StreamConfig) error {
	return h.declare(ctx, "/v1/streams/", name, cfg, true)
}

// declare PUTs cfg to prefix+NAME, with ?if_absent=1 when ifAbsent.
func (h *HTTP) declare(ctx context.Context, prefix, name string, cfg any, ifAbsent bool) error {
	body, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding %q settings: %w", name, err)
	}
	path := prefix + url.PathEscape(name)
	if ifAbsent {
		path += "?if_absent=1"
	}
	return h.send(ctx, http.MethodPut, path, bytes.NewReader(body),
		http.Header{"Content-Type": {"application/json"}}, nil)
}
