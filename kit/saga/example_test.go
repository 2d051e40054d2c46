package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/switchyard/switchyard/kit/saga"
	"github.com/switchyard/switchyard/kit/store"
)

// A ride's payment as a saga: charge the rider at the card processor
// (an HTTP call carrying the step's idempotency key), then pay the
// driver, who is out of reach, so the charge is refunded. The saga is
// started in the same transaction as the ride's row.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "saga-example")
	defer os.RemoveAll(dir)
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "payments.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()

	// The card processor applies a request once per Idempotency-Key.
	var mu sync.Mutex
	seen := map[string]bool{}
	processor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		first := !seen[key]
		seen[key] = true
		mu.Unlock()
		fmt.Printf("processor: %s %s key=%s first=%v\n", r.Method, r.URL.Path, key, first)
		w.WriteHeader(http.StatusOK)
	}))
	defer processor.Close()
	post := func(ctx context.Context, path, key string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, processor.URL+path, nil)
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		return nil
	}

	type ride struct {
		Rider  string
		Amount int
	}
	payment := &saga.Definition{
		Name: "ride-payment",
		Steps: []saga.Step{{
			Name: "charge-rider",
			Action: func(ctx context.Context, sc *saga.StepContext) error {
				return post(ctx, "/charge", sc.IdempotencyKey)
			},
			Compensation: func(ctx context.Context, sc *saga.StepContext) error {
				return post(ctx, "/refund", sc.IdempotencyKey)
			},
			Timeout: 5 * time.Second,
		}, {
			Name: "pay-driver",
			Action: func(ctx context.Context, sc *saga.StepContext) error {
				return saga.Permanent(errors.New("driver account closed"))
			},
		}},
	}

	o, err := saga.New(ctx, db, saga.Options{})
	if err != nil {
		panic(err)
	}
	o.Register(payment)
	db.Migrate(ctx, "rides", []store.Migration{{Version: 1, Name: "rides", SQL: "CREATE TABLE rides (id TEXT PRIMARY KEY, rider TEXT NOT NULL)"}})
	err = db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO rides (id, rider) VALUES (?, ?)", "ride-7", "ann"); err != nil {
			return err
		}
		return saga.Start(ctx, tx, payment, "ride-7", ride{Rider: "ann", Amount: 1250})
	})
	if err != nil {
		panic(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { o.Run(runCtx); close(done) }()
	info, err := o.Wait(ctx, "ride-7")
	stop()
	<-done
	if err != nil {
		panic(err)
	}
	fmt.Println("saga:", info.State, "failed at", info.FailedStep+":", info.LastError)
	for _, e := range info.History {
		fmt.Println(" ", e.Seq, e.Phase, e.Step, e.Outcome)
	}
	// Output:
	// processor: POST /charge key=ride-7/charge-rider first=true
	// processor: POST /refund key=ride-7/charge-rider/compensate first=true
	// saga: compensated failed at pay-driver: driver account closed
	//   1 start  ok
	//   2 action charge-rider ok
	//   3 action pay-driver failed
	//   4 compensation charge-rider ok
}

// An asynchronous step sends a command and completes when the reply
// arrives: here the "driver service" answers through a channel standing
// in for the broker, and its consumer hands the reply to Deliver.
func Example_asyncReply() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "saga-example")
	defer os.RemoveAll(dir)
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "match.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()

	commands := make(chan string, 1) // the command topic
	match := &saga.Definition{Name: "match", Steps: []saga.Step{{
		Name: "offer-driver",
		Action: func(ctx context.Context, sc *saga.StepContext) error {
			commands <- sc.SagaID // publish "offer ride" with Msg-Id = sc.IdempotencyKey
			return nil
		},
		OnReply: func(ctx context.Context, sc *saga.StepContext, reply []byte) error {
			var r struct{ Accepted bool }
			if err := json.Unmarshal(reply, &r); err != nil {
				return saga.Permanent(err)
			}
			if !r.Accepted {
				return saga.Permanent(errors.New("driver declined"))
			}
			return sc.SetData("matched")
		},
		Timeout: 10 * time.Second, // no answer in 10 s fails the attempt
	}}}
	o, err := saga.New(ctx, db, saga.Options{})
	if err != nil {
		panic(err)
	}
	o.Register(match)
	go func() { // the reply consumer
		for id := range commands {
			o.Deliver(ctx, id, "offer-driver", []byte(`{"Accepted": true}`))
		}
	}()
	defer close(commands)
	o.Start(ctx, match, "ride-8", "looking")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { o.Run(runCtx); close(done) }()
	info, _ := o.Wait(ctx, "ride-8")
	stop()
	<-done
	var phases []string
	for _, e := range info.History {
		phases = append(phases, e.Phase+":"+e.Outcome)
	}
	fmt.Println(info.State, string(info.Data), strings.Join(phases, " "))
	// Output: completed "matched" start:ok action:waiting reply:ok
}
