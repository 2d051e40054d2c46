package shard_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/switchyard/switchyard/kit/shard"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("user-%d", i)
	}
	return out
}

func TestStrategies(t *testing.T) {
	h, _ := shard.Hash(4)
	r, _ := shard.Range([]string{"g", "n", "t"})
	c, _ := shard.Consistent([]string{"s0", "s1", "s2", "s3"}, nil)
	for _, s := range []shard.Strategy{h, r, c} {
		counts := make([]int, s.N())
		for _, k := range keys(8000) {
			i := s.Shard(k)
			if i < 0 || i >= s.N() {
				t.Fatalf("%T: shard %d out of range", s, i)
			}
			counts[i]++
			if s.Shard(k) != i {
				t.Fatalf("%T: not a function of the key", s)
			}
		}
		t.Logf("%T: %v", s, counts)
	}
	for k, want := range map[string]int{"a": 0, "g": 1, "m": 1, "n": 2, "zz": 3, "": 0} {
		if got := r.Shard(k); got != want {
			t.Errorf("Range: %q on %d, want %d", k, got, want)
		}
	}
	if _, err := shard.Range([]string{"b", "a"}); err == nil {
		t.Error("unsorted bounds accepted")
	}
	if _, err := shard.Hash(0); err == nil {
		t.Error("Hash(0) accepted")
	}
}

// TestPlanMovesOnlyChangedOwners: growing a consistent ring from 4 to 5
// moves about a fifth of the keys, all to the new shard; hash mod n moves
// most of them.
func TestPlanMovesOnlyChangedOwners(t *testing.T) {
	ks := keys(10000)
	c4, _ := shard.Consistent([]string{"s0", "s1", "s2", "s3"}, nil)
	c5, _ := shard.Consistent([]string{"s0", "s1", "s2", "s3", "s4"}, nil)
	moves := shard.Plan(ks, c4, c5)
	for _, m := range moves {
		if m.To != 4 {
			t.Fatalf("%s moved %d -> %d; only the new shard takes keys", m.Key, m.From, m.To)
		}
	}
	if n := len(moves); n < 1500 || n > 2500 {
		t.Fatalf("consistent: %d of 10000 keys move, want about 2000", n)
	}
	h4, _ := shard.Hash(4)
	h5, _ := shard.Hash(5)
	if n := len(shard.Plan(ks, h4, h5)); n < 7000 {
		t.Fatalf("hash mod: only %d keys move; expected most", n)
	}
	t.Logf("4 -> 5 shards: consistent moves %d keys, hash mod n moves %d", len(moves), len(shard.Plan(ks, h4, h5)))
}

func TestReshard(t *testing.T) {
	ctx := context.Background()
	storetest.Each(t, func(t *testing.T, first *store.DB) {
		var dbs []*store.DB
		for i := range 3 {
			db := first
			if i > 0 {
				if first.Dialect == store.Postgres {
					db = storetest.Postgres(t)
				} else {
					db = storetest.SQLite(t)
				}
			}
			if err := db.Migrate(ctx, "orders", []store.Migration{{Version: 1, SQL: "CREATE TABLE orders (id TEXT PRIMARY KEY, customer TEXT NOT NULL, amount BIGINT NOT NULL);"}}); err != nil {
				t.Fatal(err)
			}
			dbs = append(dbs, db)
		}
		from, _ := shard.Consistent([]string{"a", "b"}, nil)
		to, _ := shard.Consistent([]string{"a", "b", "c"}, nil)
		customers := keys(300)
		for i, cu := range customers {
			for j := range 2 {
				if _, err := dbs[from.Shard(cu)].Exec(ctx, "INSERT INTO orders (id, customer, amount) VALUES (?, ?, ?)", fmt.Sprintf("o%d-%d", i, j), cu, i*10+j); err != nil {
					t.Fatal(err)
				}
			}
		}
		want := len(shard.Plan(customers, from, to))
		moved, err := shard.Reshard(ctx, dbs[:2], from, dbs, to, "orders", "customer")
		if err != nil {
			t.Fatal(err)
		}
		if moved != want {
			t.Fatalf("moved %d keys, plan says %d", moved, want)
		}
		// Every order is now on its owner under the new strategy, once.
		total := 0
		for i, db := range dbs {
			rows, err := db.Query(ctx, "SELECT customer FROM orders")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var cu string
				rows.Scan(&cu)
				if to.Shard(cu) != i {
					t.Errorf("%s's order on shard %d, owner is %d", cu, i, to.Shard(cu))
				}
				total++
			}
			rows.Close()
		}
		if total != 600 {
			t.Fatalf("%d orders after resharding, want 600", total)
		}
		// Running it again moves nothing.
		if moved, err := shard.Reshard(ctx, dbs, to, dbs, to, "orders", "customer"); err != nil || moved != 0 {
			t.Fatalf("second run: %d %v", moved, err)
		}
		if _, err := shard.Reshard(ctx, dbs, to, dbs, to, "orders; DROP TABLE x", "customer"); err == nil {
			t.Fatal("a table name with SQL in it was taken")
		}
	})
}
