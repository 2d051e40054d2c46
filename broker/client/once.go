package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/switchyard/switchyard/broker"
)

// ProcessedStore remembers which messages a consumer has processed: the
// consumer side of exactly-once processing (the producer side is Msg-Id
// dedup in the broker).
//
// For exactly-once, Process must record id in the same atomic step as the
// side effects of fn: with a database, one transaction that inserts id into
// a processed-ids table (unique key) and applies the update.
type ProcessedStore interface {
	// Process runs fn and records id, unless id is already recorded; it
	// reports whether fn ran. If fn fails, id is not recorded.
	Process(ctx context.Context, id string, fn func(ctx context.Context) error) (bool, error)
}

// MessageKey is the id ProcessOnce dedups on: the producer's Msg-Id when
// set, else the queue and the broker's message id.
func MessageKey(queue string, d broker.Delivery) string {
	if d.MsgID != "" {
		return "id:" + d.MsgID
	}
	return "seq:" + queue + "/" + strconv.FormatUint(d.Seq, 10)
}

// ProcessOnce receives one batch from queue and calls handle once per
// message id: a redelivered or re-published duplicate whose id the store
// already holds is acked without calling handle. A message whose handler
// fails is nacked (redelivered later) and its error returned, joined with
// the others. It returns how many messages handle processed.
func ProcessOnce(ctx context.Context, c Consumer, store ProcessedStore, queue string, opts broker.ReceiveOptions,
	handle func(context.Context, broker.Delivery) error) (int, error) {
	ds, err := c.Receive(ctx, queue, opts)
	if err != nil {
		return 0, err
	}
	var (
		ack, nack []string
		errs      []error
		n         int
	)
	for _, d := range ds {
		ran, err := store.Process(ctx, MessageKey(queue, d), func(ctx context.Context) error { return handle(ctx, d) })
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("message %d: %w", d.Seq, err))
			nack = append(nack, d.Receipt)
		default:
			if ran {
				n++
			}
			ack = append(ack, d.Receipt)
		}
	}
	if opts.AutoAck {
		return n, errors.Join(errs...)
	}
	if len(ack) > 0 {
		if _, err := c.Ack(ctx, queue, ack...); err != nil {
			errs = append(errs, fmt.Errorf("acking: %w", err))
		}
	}
	if len(nack) > 0 {
		if _, err := c.Nack(ctx, queue, 0, nack...); err != nil {
			errs = append(errs, fmt.Errorf("nacking: %w", err))
		}
	}
	return n, errors.Join(errs...)
}

// MemoryStore is a ProcessedStore in memory (for tests and for consumers
// whose side effects are in memory too). Safe for concurrent use; ids being
// processed block duplicates until done.
type MemoryStore struct {
	mu   sync.Mutex
	done map[string]bool
	busy map[string]*sync.Mutex
}

// Process implements ProcessedStore.
func (s *MemoryStore) Process(ctx context.Context, id string, fn func(context.Context) error) (bool, error) {
	s.mu.Lock()
	if s.done == nil {
		s.done, s.busy = map[string]bool{}, map[string]*sync.Mutex{}
	}
	l := s.busy[id]
	if l == nil {
		l = &sync.Mutex{}
		s.busy[id] = l
	}
	s.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	s.mu.Lock()
	seen := s.done[id]
	s.mu.Unlock()
	if seen {
		return false, nil
	}
	if err := fn(ctx); err != nil {
		return false, err
	}
	s.mu.Lock()
	s.done[id] = true
	s.mu.Unlock()
	return true, nil
}
