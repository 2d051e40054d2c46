package outbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
)

// A service writes its business row and the event announcing it in one
// transaction; the relay publishes the event once the transaction has
// committed. Here the publisher prints instead of talking to a broker
// (outbox.NewBroker(conn) is the real one).
func Example() {
	dir, _ := os.MkdirTemp("", "outbox-example")
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "rides.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	if err := outbox.Prepare(ctx, db); err != nil {
		panic(err)
	}
	db.Exec(ctx, "CREATE TABLE rides (id TEXT PRIMARY KEY, rider TEXT)")

	err = db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO rides (id, rider) VALUES (?, ?)", "r1", "ann"); err != nil {
			return err
		}
		return outbox.Add(ctx, tx, "queue:rides", broker.Message{ID: "ride-r1-created", Key: "r1", Body: []byte(`{"ride":"r1"}`)})
	})
	if err != nil {
		panic(err)
	}

	done := make(chan struct{})
	pub := outbox.PublisherFunc(func(ctx context.Context, dest string, msgs ...broker.Message) error {
		for _, m := range msgs {
			fmt.Println(dest, m.ID, m.Key, string(m.Body))
		}
		close(done)
		return nil
	})
	relay, err := outbox.NewRelay(ctx, db, pub, outbox.RelayOptions{})
	if err != nil {
		panic(err)
	}
	go relay.Run(ctx)
	<-done
	// Output: queue:rides ride-r1-created r1 {"ride":"r1"}
}
