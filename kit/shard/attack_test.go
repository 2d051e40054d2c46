package shard_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/shard"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// TestReshardSameDatabaseTwoHandles: the destination list opened on its
// own (dst from config: the old shards plus the new one, each
// store.Open'ed again) holds other handles to the same databases. Reshard
// compared handles, so every key "moved" from a shard to itself: the copy
// found its rows already there (ON CONFLICT DO NOTHING) and the delete
// removed them — every row of every key that keeps its shard was lost.
// Shards are now told apart by the database itself.
func TestReshardSameDatabaseTwoHandles(t *testing.T) {
	ctx := context.Background()
	var paths []string
	var src, dst []*store.DB
	for range 3 {
		p := storetest.SQLitePath(t)
		paths = append(paths, p)
		for _, list := range []*[]*store.DB{&src, &dst} {
			db, err := store.Open(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			*list = append(*list, db)
		}
		if err := src[len(src)-1].Migrate(ctx, "orders", []store.Migration{{Version: 1, SQL: "CREATE TABLE orders (id TEXT PRIMARY KEY, customer TEXT NOT NULL);"}}); err != nil {
			t.Fatal(err)
		}
	}
	from, _ := shard.Consistent([]string{"a", "b"}, nil)
	to, _ := shard.Consistent([]string{"a", "b", "c"}, nil)
	var customers []string
	for i := range 200 {
		cu := fmt.Sprintf("cust-%d", i)
		customers = append(customers, cu)
		if _, err := src[from.Shard(cu)].Exec(ctx, "INSERT INTO orders (id, customer) VALUES (?, ?)", "o"+cu, cu); err != nil {
			t.Fatal(err)
		}
	}
	want := len(shard.Plan(customers, from, to))
	moved, err := shard.Reshard(ctx, src[:2], from, dst, to, "orders", "customer")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, db := range dst {
		var n int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM orders").Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
		_ = i
	}
	if total != len(customers) || moved != want {
		t.Fatalf("after resharding through second handles: %d of %d orders left, %d keys moved (plan %d)", total, len(customers), moved, want)
	}
}

// TestFencedWriteOutlivingItsLease: FencedWrite checked the primary
// lease when its transaction began, then ran fn for as long as fn took
// and committed. A write that outlived the lease (a slow fn, a stalled
// process) committed on the old primary after the failover, which waits
// out the lease, could have promoted a standby: a write the new primary
// never sees. The lease is checked again before the commit.
func TestFencedWriteOutlivingItsLease(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.Exec(ctx, "CREATE TABLE fenced (k TEXT PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		l, held, err := db.TryLease(ctx, shard.PrimaryLease, "n1", 300*time.Millisecond)
		if err != nil || !held {
			t.Fatalf("lease: %v %v", held, err)
		}
		err = shard.FencedWrite(ctx, db, "n1", func(tx *store.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO fenced (k) VALUES ('late')"); err != nil {
				return err
			}
			for !time.Now().After(l.Expires) { // the lease runs out under fn
				time.Sleep(10 * time.Millisecond)
			}
			return nil
		})
		if !errors.Is(err, shard.ErrFenced) {
			t.Fatalf("a write that outlived its lease: %v, want ErrFenced", err)
		}
		var n int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM fenced").Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d rows committed (%v), want none", n, err)
		}
	})
}
