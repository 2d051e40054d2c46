package shard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/switchyard/switchyard/kit/store"
)

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Reshard moves the rows of table whose key column keyCol changes owner
// from strategy from (shards src, indexed by from's shard numbers) to
// strategy to (shards dst, indexed by to's): each moving key's rows are
// copied to the new shard, then deleted from the old one. Keys that keep
// their shard are not touched. It returns the number of keys moved.
//
// Shards are matched by database, not by handle (a small table
// sy_shard_identity holds a random token in each): dst may be handles
// opened separately from src. It is safe to run again after a crash: the copy skips rows already
// there (the table needs a primary key), the delete finishes the move.
// Writes to a moving key during Reshard may land on the old shard and be
// deleted with it; pause writers (or write to both) while it runs.
func Reshard(ctx context.Context, src []*store.DB, from Strategy, dst []*store.DB, to Strategy, table, keyCol string) (int, error) {
	if !ident.MatchString(table) || !ident.MatchString(keyCol) {
		return 0, fmt.Errorf("shard: Reshard: table %q / column %q: want plain SQL identifiers", table, keyCol)
	}
	if len(src) != from.N() || len(dst) != to.N() {
		return 0, fmt.Errorf("shard: Reshard: %d source shards for a %d-shard strategy, %d destinations for %d", len(src), from.N(), len(dst), to.N())
	}
	// Shards are told apart by the database, not the handle: a dst list
	// opened on its own holds other handles to the source databases, and
	// a key "moved" from a database to itself would be copied onto its
	// own rows and then deleted.
	srcID, err := identities(ctx, src)
	if err != nil {
		return 0, err
	}
	dstID, err := identities(ctx, dst)
	if err != nil {
		return 0, err
	}
	moved := 0
	for si, s := range src {
		keys, err := distinctKeys(ctx, s, table, keyCol)
		if err != nil {
			return moved, fmt.Errorf("shard: Reshard: shard %d: %w", si, err)
		}
		for _, k := range keys {
			// A key may sit on a shard that does not own it under from
			// (an earlier run stopped between copy and delete): it is
			// placed by to like any other, which finishes that move.
			ti := to.Shard(k)
			if dstID[ti] == srcID[si] {
				continue
			}
			if err := moveKey(ctx, s, dst[ti], table, keyCol, k); err != nil {
				return moved, fmt.Errorf("shard: Reshard: key %q shard %d -> %d: %w", k, si, ti, err)
			}
			moved++
		}
	}
	return moved, nil
}

// identities returns each database's identity token (see identity).
func identities(ctx context.Context, dbs []*store.DB) ([]string, error) {
	ids := make([]string, len(dbs))
	for i, db := range dbs {
		id, err := identity(ctx, db)
		if err != nil {
			return nil, fmt.Errorf("shard: Reshard: shard %d: reading its identity: %w", i, err)
		}
		ids[i] = id
	}
	return ids, nil
}

// identity returns a random token stored once in the database
// (sy_shard_identity, created on first use): two handles to one database
// (or PostgreSQL schema) read the same token, two databases different
// ones.
func identity(ctx context.Context, db *store.DB) (string, error) {
	if _, err := db.Exec(ctx, "CREATE TABLE IF NOT EXISTS sy_shard_identity (id INTEGER PRIMARY KEY, token TEXT NOT NULL)"); err != nil {
		return "", err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	if _, err := db.Exec(ctx, "INSERT INTO sy_shard_identity (id, token) VALUES (1, ?) ON CONFLICT (id) DO NOTHING", hex.EncodeToString(b[:])); err != nil {
		return "", err
	}
	var token string
	err := db.QueryRow(ctx, "SELECT token FROM sy_shard_identity WHERE id = 1").Scan(&token)
	return token, err
}

func distinctKeys(ctx context.Context, db *store.DB, table, keyCol string) ([]string, error) {
	rows, err := db.Query(ctx, "SELECT DISTINCT "+keyCol+" FROM "+table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

func moveKey(ctx context.Context, from, to *store.DB, table, keyCol, key string) error {
	rows, err := from.Query(ctx, "SELECT * FROM "+table+" WHERE "+keyCol+" = ?", key)
	if err != nil {
		return err
	}
	cols, err := rows.Columns()
	if err != nil {
		rows.Close()
		return err
	}
	var data [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			return err
		}
		data = append(data, vals)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range cols {
		if !ident.MatchString(c) {
			return fmt.Errorf("column %q is not a plain identifier", c)
		}
	}
	ins := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ") ON CONFLICT DO NOTHING"
	if err := to.InTx(ctx, func(tx *store.Tx) error {
		for _, vals := range data {
			if _, err := tx.Exec(ctx, ins, vals...); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	_, err = from.Exec(ctx, "DELETE FROM "+table+" WHERE "+keyCol+" = ?", key)
	return err
}
