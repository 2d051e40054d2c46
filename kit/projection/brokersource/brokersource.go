// Package brokersource feeds a projection from a switchyard broker
// stream: another service's events, published to the broker, become a
// projection.Source, so one read model can join them with the local
// event store (CQRS over several services).
//
// A message's checkpoint position is its stream offset (the broker
// numbers a stream's messages from 1, so 0 means "nothing applied"). The body becomes Message.Data, the headers
// Message.Metadata; the type, key and id are taken from the headers the
// Options name.
package brokersource

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/projection"
)

// Options say which headers carry what.
type Options struct {
	// Name of the source in checkpoints and metrics (default
	// "broker:" + stream).
	Name string
	// TypeHeader, KeyHeader and IDHeader name the headers copied to
	// Message.Type, Stream and ID (defaults "type", "key", "Msg-Id").
	TypeHeader, KeyHeader, IDHeader string
	// Wait is how long a read waits at the end of the stream for a new
	// message (a long poll; default 0: return at once).
	Wait time.Duration
	// SkipGaps accepts messages the stream's retention dropped before
	// they were applied (the view then lacks them); by default such a
	// gap fails Read with ErrGap.
	SkipGaps bool
}

// ErrGap is returned (wrapped, naming the offsets) when the stream no
// longer holds the messages right after the checkpoint: its retention
// (max_age, max_bytes) dropped them before the projection applied them.
// The projection stops there rather than build a view that silently
// lacks them; rebuild it from a source that has them, or set SkipGaps to
// accept the loss.
var ErrGap = errors.New("brokersource: messages after the checkpoint were dropped by the stream's retention")

// Source reads one broker stream.
type Source struct {
	c      client.StreamClient
	stream string
	o      Options
}

// New returns a source over stream, read through c (a *client.Conn or
// *client.HTTP).
func New(c client.StreamClient, stream string, o Options) (*Source, error) {
	if c == nil || stream == "" {
		return nil, errors.New("brokersource: want a client and a stream name")
	}
	if o.Name == "" {
		o.Name = "broker:" + stream
	}
	if o.TypeHeader == "" {
		o.TypeHeader = "type"
	}
	if o.KeyHeader == "" {
		o.KeyHeader = "key"
	}
	if o.IDHeader == "" {
		o.IDHeader = "Msg-Id"
	}
	return &Source{c: c, stream: stream, o: o}, nil
}

// Name implements projection.Source.
func (s *Source) Name() string { return s.o.Name }

// Read implements projection.Source: the messages from offset after+1.
func (s *Source) Read(ctx context.Context, after int64, limit int) ([]projection.Message, error) {
	if after < 0 {
		return nil, fmt.Errorf("brokersource %s: negative checkpoint %d", s.o.Name, after)
	}
	page, err := s.c.ReadStream(ctx, s.stream, client.FromOffset(uint64(after)+1), broker.ReadOptions{Max: min(max(limit, 1), 10000), Wait: s.o.Wait})
	if err != nil {
		return nil, err
	}
	out := make([]projection.Message, 0, len(page.Messages))
	for _, m := range page.Messages {
		if int64(m.Offset) <= after {
			continue
		}
		// The broker starts at the first retained offset: one past the
		// checkpoint's successor means messages were dropped unapplied.
		if len(out) == 0 && m.Offset > uint64(after)+1 && !s.o.SkipGaps {
			return nil, fmt.Errorf("%w: %s offsets %d to %d (checkpoint %d, first retained %d)", ErrGap, s.o.Name, after+1, m.Offset-1, after, m.Offset)
		}
		out = append(out, projection.Message{
			Position: int64(m.Offset),
			ID:       m.Headers[s.o.IDHeader],
			Stream:   m.Headers[s.o.KeyHeader],
			Type:     m.Headers[s.o.TypeHeader],
			Data:     m.Body,
			Metadata: m.Headers,
			Time:     m.Time,
		})
	}
	return out, nil
}

// Head implements projection.Source: the position of the stream's last
// message and its time.
func (s *Source) Head(ctx context.Context) (int64, time.Time, error) {
	page, err := s.c.ReadStream(ctx, s.stream, client.FromEnd(), broker.ReadOptions{Max: 1})
	if err != nil {
		return 0, time.Time{}, err
	}
	if page.Next <= 1 {
		return 0, time.Time{}, nil // empty stream
	}
	last, err := s.c.ReadStream(ctx, s.stream, client.FromOffset(page.Next-1), broker.ReadOptions{Max: 1})
	if err != nil {
		return 0, time.Time{}, err
	}
	var at time.Time
	if len(last.Messages) > 0 {
		at = last.Messages[0].Time
	}
	return int64(page.Next - 1), at, nil
}
