// Package storetest runs one test against every dialect the kit
// supports: a fresh SQLite file and a fresh PostgreSQL schema, so each
// pattern's suite is written once and proven on both.
//
// PostgreSQL is taken from SWITCHYARD_TEST_POSTGRES (default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable). A server that
// cannot be reached fails the test, unless SWITCHYARD_TEST_POSTGRES=off,
// which skips the PostgreSQL half with a message saying so.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/store"
)

// DefaultPostgres is the server the tests use when
// SWITCHYARD_TEST_POSTGRES is unset.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// PostgresURL is the base URL of the test server, or "" when the
// PostgreSQL half is switched off.
func PostgresURL() string {
	u := os.Getenv("SWITCHYARD_TEST_POSTGRES")
	if u == "off" {
		return ""
	}
	if u == "" {
		u = DefaultPostgres
	}
	return u
}

// Each runs fn as a subtest per dialect, each with a database of its own.
func Each(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t)) })
}

// SQLite opens a fresh SQLite database in a temporary directory, closed
// when the test ends.
func SQLite(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "kit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// SQLitePath is a fresh SQLite database URL for tests that open it in
// several processes.
func SQLitePath(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "kit.db")
}

// PostgresDSN creates a fresh schema on the test server and returns a URL
// whose connections use it; the schema is dropped when the test ends.
// Several processes may open the URL.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := PostgresURL()
	if base == "" {
		t.Skip("PostgreSQL half skipped: SWITCHYARD_TEST_POSTGRES=off")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := store.Open(ctx, base)
	if err != nil {
		t.Fatalf("PostgreSQL for the kit's tests: %v (start it, set SWITCHYARD_TEST_POSTGRES to its URL, or =off to skip)", err)
	}
	defer admin.Close()
	var b [6]byte
	rand.Read(b[:])
	schema := "sytest_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a, err := store.Open(ctx, base)
		if err != nil {
			t.Logf("drop schema %s: %v", schema, err)
			return
		}
		defer a.Close()
		if _, err := a.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

// Postgres opens a fresh schema on the test server, closed and dropped
// when the test ends.
func Postgres(t testing.TB) *store.DB {
	t.Helper()
	dsn := PostgresDSN(t)
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
