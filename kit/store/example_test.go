package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchyard/switchyard/kit/store"
)

// A service opens its database (a SQLite file here; a postgres:// URL
// works the same), applies its migrations, and writes in a transaction.
func Example() {
	dir, _ := os.MkdirTemp("", "store-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "rides.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	err = db.Migrate(ctx, "rides", []store.Migration{
		{Version: 1, Name: "rides", SQL: "CREATE TABLE rides (id TEXT PRIMARY KEY, rider TEXT NOT NULL);"},
	})
	if err != nil {
		panic(err)
	}
	err = db.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO rides (id, rider) VALUES (?, ?)", "r1", "ann")
		return err
	})
	if err != nil {
		panic(err)
	}
	var rider string
	db.QueryRow(ctx, "SELECT rider FROM rides WHERE id = ?", "r1").Scan(&rider)
	fmt.Println(db.Dialect, rider)
	// Output: sqlite ann
}
