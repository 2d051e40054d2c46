package cache

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// sqlStore is a real system of record for the tests: a SQLite table.
type sqlStore struct {
	db    *sql.DB
	saves atomic.Int64 // Save calls and writes in SaveBatch
	loads atomic.Int64
	fail  atomic.Pointer[error] // when set, every call fails with it
}

func openSQLStore(t testing.TB, path string) *sqlStore {
	t.Helper()
	s, err := openSQLStoreErr(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.db.Close() })
	return s
}

func openSQLStoreErr(path string) (*sqlStore, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(5000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, val BLOB NOT NULL)`); err != nil {
		db.Close()
		return nil, err
	}
	return &sqlStore{db: db}, nil
}

func (s *sqlStore) err() error {
	if p := s.fail.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *sqlStore) Load(ctx context.Context, key string) ([]byte, error) {
	s.loads.Add(1)
	if err := s.err(); err != nil {
		return nil, err
	}
	var v []byte
	err := s.db.QueryRowContext(ctx, `SELECT val FROM kv WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("kv %q: %w", key, ErrNotFound)
	}
	return v, err
}

func (s *sqlStore) Save(ctx context.Context, key string, v []byte) error {
	return s.SaveBatch(ctx, []Write[[]byte]{{Key: key, Value: v}})
}

func (s *sqlStore) Remove(ctx context.Context, key string) error {
	return s.SaveBatch(ctx, []Write[[]byte]{{Key: key, Delete: true}})
}

func (s *sqlStore) SaveBatch(ctx context.Context, ws []Write[[]byte]) error {
	if err := s.err(); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, w := range ws {
		if w.Delete {
			_, err = tx.ExecContext(ctx, `DELETE FROM kv WHERE key = ?`, w.Key)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO kv (key, val) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET val = excluded.val`, w.Key, w.Value)
		}
		if err != nil {
			return err
		}
	}
	s.saves.Add(int64(len(ws)))
	return tx.Commit()
}

func (s *sqlStore) all(t testing.TB) map[string]string {
	t.Helper()
	rows, err := s.db.Query(`SELECT key, val FROM kv`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		m[k] = string(v)
	}
	return m
}

// mapStore is an in-memory Store without batches, for strategy tests.
type mapStore struct {
	mu    sync.Mutex
	m     map[string][]byte
	fail  error
	saves int
}

func (s *mapStore) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	v, ok := s.m[key]
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}

func (s *mapStore) Save(_ context.Context, key string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[key] = v
	s.saves++
	return nil
}

func (s *mapStore) Remove(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.m, key)
	return nil
}

func (s *mapStore) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}
