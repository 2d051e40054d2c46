package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

func TestRebind(t *testing.T) {
	cases := map[string]string{
		"SELECT 1":                          "SELECT 1",
		"a = ? AND b = ?":                   "a = $1 AND b = $2",
		"x = '?' AND y = ?":                 "x = '?' AND y = $1",
		`"we?ird" = ? -- why?` + "\n" + "?": `"we?ird" = $1 -- why?` + "\n" + "$2",
		"/* ? */ ? 'it''s ?' ?":             "/* ? */ $1 'it''s ?' $2",
		"'unterminated ?":                   "'unterminated ?",
		"/* unterminated ?":                 "/* unterminated ?",
		"-- comment at end ?":               "-- comment at end ?",
	}
	for in, want := range cases {
		if got := store.Postgres.Rebind(in); got != want {
			t.Errorf("Rebind(%q) = %q, want %q", in, got, want)
		}
		if got := store.SQLite.Rebind(in); got != in {
			t.Errorf("SQLite Rebind(%q) changed it to %q", in, got)
		}
	}
}

func FuzzRebind(f *testing.F) {
	for _, s := range []string{"a = ?", "'?' ?", "-- ?\n?", "/* ? */ ?", `"?" ?`, "''''?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := store.Postgres.Rebind(s)
		// Only placeholders change: dropping every $N and ? leaves the
		// same text, and the count of $N equals the ? turned.
		if strings.Count(s, "?") < strings.Count(out, "?") {
			t.Fatalf("Rebind added question marks: %q -> %q", s, out)
		}
		if !strings.Contains(s, "?") && out != s {
			t.Fatalf("Rebind changed text without placeholders: %q -> %q", s, out)
		}
	})
}

func TestOpenRejects(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{"mysql://x", "sqlite:", "sqlite:/tmp/x.db?_pragma=foo"} {
		if db, err := store.Open(ctx, dsn); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", dsn)
		}
	}
	_, err := store.Open(ctx, "postgres://postgres:hunter2@127.0.0.1:1/x?connect_timeout=1")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("unreachable server: %v (the password must not show)", err)
	}
}

var testMigrations = []store.Migration{
	{Version: 1, Name: "accounts", SQL: "CREATE TABLE accounts (id TEXT PRIMARY KEY, balance BIGINT NOT NULL);"},
	{Version: 2, Name: "names", SQL: "ALTER TABLE accounts ADD COLUMN name TEXT;\nCREATE INDEX accounts_name ON accounts (name);"},
}

func TestStore(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		t.Run("migrate", func(t *testing.T) {
			if err := db.Migrate(ctx, "acct", testMigrations); err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx, "acct", testMigrations); err != nil {
				t.Fatalf("second run: %v", err)
			}
			if v, err := db.Version(ctx, "acct"); err != nil || v != 2 {
				t.Fatalf("version %d %v", v, err)
			}
			edited := append([]store.Migration(nil), testMigrations...)
			edited[0].SQL = "CREATE TABLE accounts (id TEXT PRIMARY KEY);"
			if err := db.Migrate(ctx, "acct", edited); err == nil || !strings.Contains(err.Error(), "different SQL") {
				t.Fatalf("edited migration: %v", err)
			}
			if err := db.Migrate(ctx, "acct", testMigrations[:1]); !errors.Is(err, store.ErrNewerSchema) {
				t.Fatalf("older build: %v", err)
			}
			if err := db.Migrate(ctx, "acct", []store.Migration{{Version: 2, SQL: "x"}}); err == nil {
				t.Fatal("a gap in versions was taken")
			}
			bad := []store.Migration{{Version: 1, SQL: "CREATE TABLE ok1 (a INT);"}, {Version: 2, SQL: "CREATE TABLE nonsense nonsense;"}}
			if err := db.Migrate(ctx, "bad", bad); err == nil || !strings.Contains(err.Error(), "bad migration 2") {
				t.Fatalf("bad SQL: %v", err)
			}
			// All or nothing: migration 1 of "bad" did not stay behind.
			if _, err := db.Exec(ctx, "SELECT * FROM ok1"); err == nil {
				t.Fatal("a failed migration run left its first migration applied")
			}
		})
		t.Run("tx", func(t *testing.T) {
			boom := errors.New("boom")
			err := db.InTx(ctx, func(tx *store.Tx) error {
				if _, err := tx.Exec(ctx, "INSERT INTO accounts (id, balance) VALUES (?, ?)", "a", 1); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatal(err)
			}
			var n int
			db.QueryRow(ctx, "SELECT COUNT(*) FROM accounts").Scan(&n)
			if n != 0 {
				t.Fatal("a failed transaction's row stayed")
			}
			if _, err := db.Exec(ctx, "INSERT INTO accounts (id, balance) VALUES (?, ?)", "a", 1); err != nil {
				t.Fatal(err)
			}
			_, err = db.Exec(ctx, "INSERT INTO accounts (id, balance) VALUES (?, ?)", "a", 2)
			if !store.IsUniqueViolation(err) {
				t.Fatalf("duplicate key: %v is not a unique violation", err)
			}
		})
		t.Run("concurrent increments", func(t *testing.T) {
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 20 {
						err := db.InTx(ctx, func(tx *store.Tx) error {
							var b int64
							if err := tx.QueryRow(ctx, "SELECT balance FROM accounts WHERE id = ?"+forUpdate(db), "a").Scan(&b); err != nil {
								return err
							}
							_, err := tx.Exec(ctx, "UPDATE accounts SET balance = ? WHERE id = ?", b+1, "a")
							return err
						})
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			var b int64
			db.QueryRow(ctx, "SELECT balance FROM accounts WHERE id = ?", "a").Scan(&b)
			if b != 161 {
				t.Fatalf("balance %d after 160 increments from 1: lost updates", b)
			}
		})
		t.Run("notify", func(t *testing.T) {
			ch, stop := db.Listen("kit_test")
			defer stop()
			drain(ch)
			// A rolled-back transaction wakes nobody.
			db.InTx(ctx, func(tx *store.Tx) error {
				tx.Notify(ctx, "kit_test")
				return errors.New("roll back")
			})
			if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.Notify(ctx, "kit_test") }); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Fatal("no wake-up after a committed Notify")
			}
		})
		t.Run("lease", func(t *testing.T) {
			l, ok, err := db.TryLease(ctx, "p0", "a", time.Hour)
			if err != nil || !ok || l.Token != 1 {
				t.Fatalf("first take: %+v %v %v", l, ok, err)
			}
			if l2, ok, err := db.TryLease(ctx, "p0", "b", time.Hour); err != nil || ok || l2.Holder != "a" {
				t.Fatalf("b took a's live lease: %+v %v %v", l2, ok, err)
			}
			if _, ok, _ := db.TryLease(ctx, "p0", "a", time.Hour); !ok {
				t.Fatal("renewal refused")
			}
			if err := db.ReleaseLease(ctx, "p0", "b"); !errors.Is(err, store.ErrNotHeld) {
				t.Fatalf("b released a's lease: %v", err)
			}
			if err := db.ReleaseLease(ctx, "p0", "a"); err != nil {
				t.Fatal(err)
			}
			l3, ok, err := db.TryLease(ctx, "p0", "b", time.Hour)
			if err != nil || !ok || l3.Token != 2 {
				t.Fatalf("b after release: %+v %v %v", l3, ok, err)
			}
			// a's old token is fenced off.
			err = db.InTx(ctx, func(tx *store.Tx) error { return store.CheckLease(ctx, tx, "p0", l.Token) })
			if !errors.Is(err, store.ErrNotHeld) {
				t.Fatalf("stale token accepted: %v", err)
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error { return store.CheckLease(ctx, tx, "p0", l3.Token) }); err != nil {
				t.Fatal(err)
			}
		})
	})
}

// TestMigrateReplicas runs Migrate from several handles (as several
// replicas would) at once: exactly one applies each migration.
func TestMigrateReplicas(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			dsn := storetest.SQLitePath(t)
			if dialect == "postgres" {
				dsn = storetest.PostgresDSN(t)
			}
			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make(chan error, 6)
			for range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					db, err := store.Open(ctx, dsn)
					if err != nil {
						errs <- err
						return
					}
					defer db.Close()
					errs <- db.Migrate(ctx, "acct", testMigrations)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			db, err := store.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_schema_migrations WHERE component = 'acct'").Scan(&n)
			if n != 2 {
				t.Fatalf("%d migration records, want 2", n)
			}
		})
	}
}

// TestMigrateUpToDateTakesNoLock: a replica starting against a schema
// that is already migrated must not wait for the write lock. Before, every
// Migrate opened a write transaction, and on SQLite a busy writer (another
// replica committing) kept a starting relay waiting up to the busy
// timeout per component: the outbox crash test saw a relay take over 20 s
// to start under load.
func TestMigrateUpToDateTakesNoLock(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			dsn := storetest.SQLitePath(t)
			if dialect == "postgres" {
				dsn = storetest.PostgresDSN(t)
			}
			ctx := context.Background()
			writer, err := store.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer writer.Close()
			if err := writer.Migrate(ctx, "acct", testMigrations); err != nil {
				t.Fatal(err)
			}
			// Hold the lock a migrating writer needs until the replica is done.
			held, release := make(chan struct{}), make(chan struct{})
			go writer.InTx(ctx, func(tx *store.Tx) error {
				if dialect == "postgres" {
					tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('switchyard.store.migrate'))")
				} else {
					tx.Exec(ctx, "UPDATE sy_schema_migrations SET name = name WHERE component = 'acct'")
				}
				close(held)
				<-release
				return nil
			})
			<-held
			defer close(release)
			replica, err := store.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer replica.Close()
			// The deadline is far below the 10 s busy timeout: a replica
			// that waited for the lock fails here instead of passing late.
			short, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if err := replica.Migrate(short, "acct", testMigrations); err != nil {
				t.Fatalf("Migrate on an up-to-date schema while a writer holds the lock: %v", err)
			}
			// A pending migration still takes the lock (and waits for it).
			more := append(append([]store.Migration(nil), testMigrations...), store.Migration{Version: len(testMigrations) + 1, Name: "more", SQL: "CREATE TABLE more_t (x INTEGER)"})
			tiny, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel2()
			if err := replica.Migrate(tiny, "acct", more); err == nil {
				t.Fatal("a pending migration applied while another writer held the lock")
			}
		})
	}
}

// TestListenAcrossHandles shows a commit on one handle waking a listener
// on another: across processes on PostgreSQL.
func TestListenAcrossHandles(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	a, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ch, stop := b.Listen("kit_cross")
	defer stop()
	// The listener's first connection sends a wake-up once LISTEN is on:
	// after it, a commit elsewhere must arrive.
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("listener never connected")
	}
	if err := a.InTx(ctx, func(tx *store.Tx) error { return tx.Notify(ctx, "kit_cross") }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up from another handle's commit")
	}
	// NotifyAfterCommit wakes other processes too (sent after the commit).
	if err := a.InTx(ctx, func(tx *store.Tx) error { tx.NotifyAfterCommit("kit_cross"); return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up from another handle's NotifyAfterCommit")
	}
}

func forUpdate(db *store.DB) string {
	if db.Dialect == store.Postgres {
		return " FOR UPDATE"
	}
	return ""
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func TestMigrateOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ms := []store.Migration{{Version: 1, Name: "t", SQL: "CREATE TABLE once_t (x INTEGER);"}}
		if err := db.MigrateOnce(ctx, "once", ms); err != nil {
			t.Fatal(err)
		}
		// A second call does not touch the database: with the record of
		// the migration gone, Migrate would try CREATE TABLE again and fail.
		if _, err := db.Exec(ctx, "DELETE FROM sy_schema_migrations WHERE component = 'once'"); err != nil {
			t.Fatal(err)
		}
		if err := db.MigrateOnce(ctx, "once", ms); err != nil {
			t.Fatalf("second MigrateOnce ran the migration again: %v", err)
		}
		if err := db.Migrate(ctx, "once", ms); err == nil {
			t.Fatal("Migrate after deleting the record should have failed (table exists)")
		}
		// A failing first call is retried next time.
		bad := []store.Migration{{Version: 1, Name: "bad", SQL: "CREATE TABLE once_bad (;"}}
		if err := db.MigrateOnce(ctx, "once-bad", bad); err == nil {
			t.Fatal("bad SQL accepted")
		}
		good := []store.Migration{{Version: 1, Name: "good", SQL: "CREATE TABLE once_bad (x INTEGER);"}}
		if err := db.MigrateOnce(ctx, "once-bad", good); err != nil {
			t.Fatalf("MigrateOnce after a failure: %v", err)
		}
	})
}
