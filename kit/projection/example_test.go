package projection_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/projection"
	"github.com/switchyard/switchyard/kit/store"
)

// A read model of rides per driver, built from the event store: the
// command side appends events, the query side reads the table.
func Example() {
	dir, _ := os.MkdirTemp("", "projection-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "hitch.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	es, err := eventstore.Open(ctx, db)
	if err != nil {
		panic(err)
	}
	for i, driver := range []string{"dee", "dan", "dee"} {
		e, _ := eventstore.NewEvent("RideFinished", map[string]any{"driver": driver, "fare": 10 + i})
		if _, err := es.Append(ctx, fmt.Sprintf("ride-%d", i), eventstore.Any, e); err != nil {
			panic(err)
		}
	}

	earnings := projection.Projection{
		Name:   "earnings",
		Tables: []string{"earnings"},
		Create: func(ctx context.Context, tx *store.Tx, t projection.Tables) error {
			_, err := tx.Exec(ctx, "CREATE TABLE "+t.T("earnings")+" (driver TEXT PRIMARY KEY, rides INTEGER NOT NULL, total INTEGER NOT NULL)")
			return err
		},
		Handle: func(ctx context.Context, tx *store.Tx, t projection.Tables, src string, m projection.Message) error {
			if m.Type != "RideFinished" {
				return nil
			}
			var d struct {
				Driver string
				Fare   int
			}
			if err := json.Unmarshal(m.Data, &d); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+t.T("earnings")+" (driver, rides, total) VALUES (?, 1, ?) "+
				"ON CONFLICT (driver) DO UPDATE SET rides = "+t.T("earnings")+".rides + 1, total = "+t.T("earnings")+".total + excluded.total",
				d.Driver, d.Fare)
			return err
		},
	}
	pr, err := projection.New(ctx, db, earnings, projection.EventStore(es))
	if err != nil {
		panic(err)
	}
	lag, _ := pr.Stats(ctx)
	fmt.Println("behind:", lag[0].Events)
	// A service runs pr.Run(ctx) in a goroutine; here, catch up once.
	if err := pr.CatchUp(ctx); err != nil {
		panic(err)
	}
	// Recompute from zero into a fresh table, swapped in when done.
	if err := pr.Rebuild(ctx); err != nil {
		panic(err)
	}
	rows, _ := db.Query(ctx, "SELECT driver, rides, total FROM earnings ORDER BY driver")
	defer rows.Close()
	for rows.Next() {
		var driver string
		var rides, total int
		rows.Scan(&driver, &rides, &total)
		fmt.Println(driver, rides, total)
	}
	lag, _ = pr.Stats(ctx)
	fmt.Println("behind:", lag[0].Events)
	// Output:
	// behind: 3
	// dan 1 11
	// dee 2 22
	// behind: 0
}
