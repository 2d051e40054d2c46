package native

import (
	"fmt"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/wire"
)

// handleAdmin serves Declare and Delete; it reports false for any other
// type.
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
	default:
		return false
	}
	return true
}

// declare decodes the settings strictly, as the HTTP API does, and
// declares the queue, topic or stream.
func declare(b *engine.Broker, req *wire.DeclareReq, who *access.Principal) error {
	switch req.Kind {
	case wire.KindQueue:
		var cfg broker.QueueConfig
		if err := settings(req, &cfg); err != nil {
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
		return b.DeclareTopic(req.Name, cfg)
	case wire.KindStream:
		var cfg broker.StreamConfig
		if err := settings(req, &cfg); err != nil {
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
