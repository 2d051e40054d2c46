package outbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/local"
	"github.com/switchyard/switchyard/kit/inbox"
	"github.com/switchyard/switchyard/kit/store"
)

// Listen to yourself: instead of a local transaction, the service
// publishes the event first (with a stable id, so a retried request
// cannot publish it twice within the broker's dedup window), then
// consumes its own event and updates its state from it through the
// inbox. The state follows the event; reads right after the request may
// not see it yet. (An in-process broker here; a client.Conn in a real
// service.)
func Example_listenToYourself() {
	dir, _ := os.MkdirTemp("", "outbox-self")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	b, err := engine.Open(engine.Config{Dir: filepath.Join(dir, "broker")})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	b.Declare("rides", broker.QueueConfig{})
	bus := local.New(b)
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "rides.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	db.Exec(ctx, "CREATE TABLE rides (id TEXT PRIMARY KEY, state TEXT)")

	// The request handler: publish only (a retry publishes the same id).
	for range 2 {
		bus.Publish(ctx, "rides", broker.Message{ID: "ride-r1-requested", Key: "r1", Body: []byte("r1")})
	}

	// The service's own consumer applies the event to its state.
	ds, _ := bus.Receive(ctx, "rides", broker.ReceiveOptions{Max: 10})
	for _, d := range ds {
		applied, err := inbox.Process(ctx, db, "rides-self", d.MsgID, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO rides (id, state) VALUES (?, 'requested')", string(d.Body))
			return err
		})
		if err == nil {
			bus.Ack(ctx, "rides", d.Receipt)
		}
		fmt.Println(d.MsgID, "applied:", applied)
	}
	var state string
	db.QueryRow(ctx, "SELECT state FROM rides WHERE id = 'r1'").Scan(&state)
	fmt.Println("r1:", state)
	// Output:
	// ride-r1-requested applied: true
	// r1: requested
}
