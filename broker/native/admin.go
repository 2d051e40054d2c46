package native

import (
	"fmt"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/wire"
)

// handleAdmin serves Declare, Delete and Bind; it reports false for any
// other type.
func (c *conn) handleAdmin(t wire.Type, id uint32, body []byte) bool {
	switch t {
	case wire.Declare:
		req, err := wire.DecodeDeclareReq(body)
		if err == nil {
			err = c.who.Check(access.Manage, req.Kind.String(), req.Name)
		}
		if err == nil {
			err = declare(c.s.b, &req, c.who)
		}
		if err != nil {
			c.fail(id, err)
			return true
		}
		c.reply(wire.DeclareOK, id, nil)
	case wire.Delete:
		req, err := wire.DecodeDeleteReq(body)
		if err == nil {
			err = c.who.Check(access.Manage, req.Kind.String(), req.Name)
		}
		if err == nil {
			err = deleteByKind(c.s.b, &req)
		}
		if err != nil {
			c.fail(id, err)
			return true
		}
		c.reply(wire.DeleteOK, id, nil)
	case wire.Bind:
		req, err := wire.DecodeBindReq(body)
		if err == nil {
			// As a declare's queues: manage on the topic, and for a bind
			// publish on the queue (the topic's messages go to it).
			err = c.who.Check(access.Manage, access.Topic, req.Topic)
		}
		if err == nil && req.Op == wire.OpBind {
			err = c.who.CheckBinding([]string{req.Queue})
		}
		if err == nil && req.CreateQueue {
			err = c.who.Check(access.Manage, access.Queue, req.Queue)
		}
		var changed bool
		if err == nil {
			if req.Op == wire.OpBind {
				changed, err = c.s.b.BindQueue(req.Topic, req.Queue, broker.BindOptions{CreateQueue: req.CreateQueue})
			} else {
				changed, err = c.s.b.UnbindQueue(req.Topic, req.Queue)
			}
		}
		if err != nil {
			c.fail(id, err)
			return true
		}
		c.reply(wire.BindOK, id, wire.AppendBindOK(nil, changed))
	default:
		return false
	}
	return true
}

// declare decodes the settings strictly, as the HTTP API does, and
// declares the queue, topic or stream.
// With IfAbsent an existing one is left as it is.
func declare(b *engine.Broker, req *wire.DeclareReq, who *access.Principal) error {
	var err error
	switch req.Kind {
	case wire.KindQueue:
		var cfg broker.QueueConfig
		if err := settings(req, &cfg); err != nil {
			return err
		}
		if req.IfAbsent {
			_, err = b.DeclareIfAbsent(req.Name, cfg)
			return err
		}
		return b.Declare(req.Name, cfg)
	case wire.KindTopic:
		var cfg broker.TopicConfig
		if err := settings(req, &cfg); err != nil {
			return err
		}
		if err := who.CheckBinding(cfg.Queues); err != nil {
			return err
		}
		if req.IfAbsent {
			_, err = b.DeclareTopicIfAbsent(req.Name, cfg)
			return err
		}
		return b.DeclareTopic(req.Name, cfg)
	case wire.KindStream:
		var cfg broker.StreamConfig
		if err := settings(req, &cfg); err != nil {
			return err
		}
		if req.IfAbsent {
			_, err = b.DeclareStreamIfAbsent(req.Name, cfg)
			return err
		}
		return b.DeclareStream(req.Name, cfg)
	}
	return fmt.Errorf("%w: unknown kind %d", wire.ErrMalformed, req.Kind)
}

func settings(req *wire.DeclareReq, cfg any) error {
	if err := broker.DecodeJSON(req.Settings, cfg); err != nil {
		return fmt.Errorf("%w: %s %q settings: parsing JSON: %w", broker.ErrInvalid, req.Kind, req.Name, err)
	}
	return nil
}

func deleteByKind(b *engine.Broker, req *wire.DeleteReq) error {
	switch req.Kind {
	case wire.KindQueue:
		return b.DeleteQueue(req.Name)
	case wire.KindTopic:
		return b.DeleteTopic(req.Name)
	case wire.KindStream:
		return b.DeleteStream(req.Name)
	}
	return fmt.Errorf("%w: unknown kind %d", wire.ErrMalformed, req.Kind)
}
