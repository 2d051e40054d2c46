package inbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchyard/switchyard/kit/inbox"
	"github.com/switchyard/switchyard/kit/store"
)

// The same message delivered twice is applied once: the second Process
// finds its id recorded and reports false, and the caller acks it.
func Example() {
	dir, _ := os.MkdirTemp("", "inbox-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "billing.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	db.Exec(ctx, "CREATE TABLE charges (ride TEXT PRIMARY KEY, cents INTEGER)")
	for range 2 { // a redelivery
		applied, err := inbox.Process(ctx, db, "billing", "ride-r1-completed", func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO charges (ride, cents) VALUES (?, ?)", "r1", 1250)
			return err
		})
		fmt.Println("applied:", applied, err)
	}
	// Output:
	// applied: true <nil>
	// applied: false <nil>
}
