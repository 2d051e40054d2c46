package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/store"
)

// Wallet is an event-sourced aggregate's state.
type Wallet struct {
	Balance int64 `json:"balance"`
}

func applyWallet(w Wallet, e eventstore.Event) (Wallet, error) {
	var d struct{ Amount int64 }
	if err := e.Decode(&d); err != nil {
		return w, err
	}
	switch e.Type {
	case "Credited":
		w.Balance += d.Amount
	case "Debited":
		if d.Amount > w.Balance {
			return w, fmt.Errorf("balance %d is less than %d", w.Balance, d.Amount)
		}
		w.Balance -= d.Amount
	}
	return w, nil
}

// A wallet is loaded from its events (after its latest snapshot),
// changed by recording new events, and saved with optimistic
// concurrency: a writer holding a stale copy gets a ConflictError.
func Example() {
	dir, _ := os.MkdirTemp("", "eventstore-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "wallets.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	es, err := eventstore.Open(ctx, db)
	if err != nil {
		panic(err)
	}
	wallets := &eventstore.Aggregate[Wallet]{Store: es, Category: "wallet", Apply: applyWallet, SnapshotEvery: 100}

	w, _ := wallets.Load(ctx, "ann")
	wallets.Record(w, "Credited", map[string]int64{"amount": 30})
	wallets.Record(w, "Debited", map[string]int64{"amount": 12})
	if err := wallets.Save(ctx, w); err != nil {
		panic(err)
	}
	fmt.Println("balance", w.State.Balance, "version", w.Version)

	// Apply refuses what the state does not allow.
	fmt.Println(wallets.Record(w, "Debited", map[string]int64{"amount": 100}))

	// Two copies loaded at version 2: the second save loses.
	a, _ := wallets.Load(ctx, "ann")
	b, _ := wallets.Load(ctx, "ann")
	wallets.Record(a, "Credited", map[string]int64{"amount": 1})
	wallets.Record(b, "Debited", map[string]int64{"amount": 18})
	fmt.Println(wallets.Save(ctx, a))
	err = wallets.Save(ctx, b)
	var conflict *eventstore.ConflictError
	fmt.Println(errors.As(err, &conflict), conflict.Actual)

	// Every event, in global order, from checkpoint 0.
	all, _ := es.ReadAll(ctx, 0, 100)
	for _, e := range all {
		fmt.Println(e.Position, e.Stream, e.Version, e.Type, string(e.Data))
	}
	// Output:
	// balance 18 version 2
	// balance 18 is less than 100
	// <nil>
	// true 3
	// 1 wallet-ann 1 Credited {"amount":30}
	// 2 wallet-ann 2 Debited {"amount":12}
	// 3 wallet-ann 3 Credited {"amount":1}
}

// Subscribe catches up from a checkpoint, then follows new events as
// they commit; the subscriber stores the last position it handled to
// resume from after a restart.
func ExampleStore_Subscribe() {
	dir, _ := os.MkdirTemp("", "eventstore-subscribe")
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "rides.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	es, _ := eventstore.Open(ctx, db)
	for _, typ := range []string{"RideRequested", "DriverAssigned"} {
		e, _ := eventstore.NewEvent(typ, nil)
		es.Append(ctx, "ride-1", eventstore.Any, e)
	}
	caughtUp := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		es.Subscribe(ctx, 0, func(_ context.Context, e eventstore.Event) error {
			fmt.Println(e.Position, e.Type)
			switch e.Position {
			case 2:
				close(caughtUp)
			case 3:
				cancel()
			}
			return nil
		})
	}()
	<-caughtUp
	e, _ := eventstore.NewEvent("RideStarted", nil)
	es.Append(context.Background(), "ride-1", eventstore.Any, e) // delivered live
	<-done
	// Output:
	// 1 RideRequested
	// 2 DriverAssigned
	// 3 RideStarted
}
