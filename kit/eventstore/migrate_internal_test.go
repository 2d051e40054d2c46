package eventstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// A store written by the first schema (positions 1, 2, 3 from the head
// row) upgrades in place: its events keep their positions and order,
// checkpoints into them stay valid, and new events come after them. On
// PostgreSQL the head row is gone, so a replica still running the old
// code fails its appends instead of taking positions readers skip.
func TestMigrationKeepsOldPositions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, "eventstore", migrations[:1]); err != nil {
			t.Fatal(err)
		}
		// Three events the way the first schema's code appended them.
		err := db.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO sy_event_streams (stream, version) VALUES ('old', 3)"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE sy_event_head SET position = 3 WHERE id = 1"); err != nil {
				return err
			}
			for i := int64(1); i <= 3; i++ {
				if _, err := tx.Exec(ctx, "INSERT INTO sy_events (position, stream, version, id, type, schema_version, data, created_ms) VALUES (?, 'old', ?, ?, 'Old', 1, 'null', 1)",
					i, i, NewID()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := db.Version(ctx, "eventstore"); err != nil || v != len(migrations) {
			t.Fatalf("schema version %d (%v), want %d", v, err, len(migrations))
		}
		if h, _, err := s.Head(ctx); err != nil || h != 3 {
			t.Fatalf("Head after the migration = %d (%v), want 3", h, err)
		}
		if _, err := s.Append(ctx, "old", 3, Event{Type: "New"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(ctx, "other", NoStream, Event{Type: "New"}, Event{Type: "New"}); err != nil {
			t.Fatal(err)
		}
		all, err := visible(ctx, s, 0, 6)
		if err != nil || len(all) != 6 {
			t.Fatalf("ReadAll: %d events, %v", len(all), err)
		}
		for i, e := range all {
			if i < 3 && (e.Position != int64(i+1) || e.Type != "Old") {
				t.Fatalf("old event %d: %+v", i, e)
			}
			if i >= 3 && (e.Type != "New" || e.Position <= all[i-1].Position) {
				t.Fatalf("new event %d: position %d after %d (%s)", i, e.Position, all[i-1].Position, e.Type)
			}
		}
		if all[3].Stream != "old" || all[3].Version != 4 {
			t.Fatalf("the old stream's next event: %+v", all[3])
		}
		// A checkpoint taken before the upgrade resumes where it was.
		rest, err := visible(ctx, s, 2, 4)
		if err != nil || len(rest) != 4 || rest[0].Position != 3 || rest[1].ID != all[3].ID {
			t.Fatalf("ReadAll after old checkpoint 2: %+v %v", rest, err)
		}
		if h, _, err := s.Head(ctx); err != nil || h != all[5].Position {
			t.Fatalf("Head = %d (%v), want %d", h, err, all[5].Position)
		}
		if db.Dialect == store.Postgres {
			if _, err := db.Exec(ctx, "UPDATE sy_event_head SET position = position + 1 WHERE id = 1"); err == nil {
				t.Fatal("the old code's position counter still exists")
			}
			// Migration 4: versions come from the events; the old code's
			// stream row is gone, so its appends fail.
			if _, err := db.Exec(ctx, "UPDATE sy_event_streams SET version = version + 1 WHERE stream = 'old'"); err == nil {
				t.Fatal("the old code's stream table still exists")
			}
		}
		if v, err := s.StreamVersion(ctx, "old"); err != nil || v != 4 {
			t.Fatalf("the old stream's version %d (%v), want 4", v, err)
		}
		if _, err := s.Append(ctx, "old", 3, Event{Type: "Late"}); !errors.Is(err, ErrConflict) {
			t.Fatalf("append at the old stream's stale version: %v, want a conflict", err)
		}
		// Opening again (another replica) changes nothing.
		if _, err := Open(ctx, db); err != nil {
			t.Fatal(err)
		}
	})
}

// A store whose old positions could reach the transaction-id range is
// refused by the migration (and left as it was) rather than upgraded
// into positions that collide.
func TestMigrationRefusesHugePositions(t *testing.T) {
	db := storetest.Postgres(t)
	ctx := context.Background()
	if err := db.Migrate(ctx, "eventstore", migrations[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "UPDATE sy_event_head SET position = ? WHERE id = 1", int64(1)<<60); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, db); err == nil || !strings.Contains(err.Error(), "transaction-id range") {
		t.Fatalf("Open over positions up to 2^60: %v", err)
	}
	if v, err := db.Version(ctx, "eventstore"); err != nil || v != 1 {
		t.Fatalf("schema version %d (%v) after the refused migration, want 1", v, err)
	}
}

// visible reads every event after from once at least want are readable
// (on PostgreSQL another package's open transaction can hold new events
// back a moment), or what is readable after 30 seconds.
func visible(ctx context.Context, s *Store, from int64, want int) ([]Event, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		all, err := s.ReadAll(ctx, from, 0)
		if err != nil || len(all) >= want || time.Now().After(deadline) {
			return all, err
		}
		time.Sleep(5 * time.Millisecond) // poll interval inside a deadline loop
	}
}
