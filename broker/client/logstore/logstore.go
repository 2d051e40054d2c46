// Package logstore is a durable client.ProcessedStore for consumers
// without a database: processed message ids in a write-ahead log in the
// consumer's own directory. It is apart from package broker/client so
// that the client does not import the log.
package logstore

import (
	"context"
	"fmt"

	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/wal"
)

// Store is a durable client.ProcessedStore in the consumer's own
// directory: a wal of processed ids, loaded into memory on open. The id is
// appended (and fsynced) after fn succeeds, so a crash between fn and the
// append runs fn again for that one message: use it where fn is idempotent
// or its side effects live in the same directory; otherwise implement
// client.ProcessedStore on the database that holds the side effects.
type Store struct {
	log *wal.Log
	mem client.MemoryStore
}

// Open opens (creating) a Store in dir.
func Open(dir string) (*Store, error) {
	l, err := wal.Open(dir, wal.Options{})
	if err != nil {
		return nil, fmt.Errorf("opening processed-id store: %w", err)
	}
	s := &Store{log: l}
	recorded := func(context.Context) error { return nil }
	if err := l.Scan(0, func(r wal.Record) error {
		_, err := s.mem.Process(context.Background(), string(r.Payload), recorded)
		return err
	}); err != nil {
		l.Close()
		return nil, fmt.Errorf("loading processed ids: %w", err)
	}
	return s, nil
}

// Process implements client.ProcessedStore.
func (s *Store) Process(ctx context.Context, id string, fn func(context.Context) error) (bool, error) {
	return s.mem.Process(ctx, id, func(ctx context.Context) error {
		if err := fn(ctx); err != nil {
			return err
		}
		if _, err := s.log.Append(ctx, []byte(id)); err != nil {
			return fmt.Errorf("recording processed id %q: %w", id, err)
		}
		return nil
	})
}

// Close closes the store.
func (s *Store) Close() error { return s.log.Close() }
