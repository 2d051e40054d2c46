package saga_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/saga"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// BenchmarkSaga measures 4-step sagas completed per second, every
// transition committed (SQLite: WAL, synchronous=FULL; PostgreSQL:
// synchronous_commit on): b.N sagas are started (in transactions of 50)
// while one orchestrator drives them, and the clock stops when the last
// one is completed. The steps do nothing, so this is the orchestrator's
// own cost: 1 start, 1 claim and 4 step transitions per saga.
func BenchmarkSaga(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchSaga(b, storetest.SQLite(b)) })
	b.Run("postgres", func(b *testing.B) { benchSaga(b, storetest.Postgres(b)) })
}

func benchSaga(b *testing.B, db *store.DB) {
	ctx := context.Background()
	noop := func(ctx context.Context, sc *saga.StepContext) error { return nil }
	def := &saga.Definition{Name: "bench"}
	for k := range 4 {
		def.Steps = append(def.Steps, saga.Step{Name: fmt.Sprint("s", k), Action: noop, Compensation: noop})
	}
	o, err := saga.New(ctx, db, saga.Options{Concurrency: 32})
	if err != nil {
		b.Fatal(err)
	}
	o.Register(def)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { o.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	const batch = 50
	for i := 0; i < b.N; i += batch {
		err := db.InTx(ctx, func(tx *store.Tx) error {
			for j := i; j < min(i+batch, b.N); j++ {
				if err := saga.Start(ctx, tx, def, fmt.Sprintf("%s-%d", b.Name(), j), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for {
		var n int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_sagas WHERE state = 'completed' AND name = 'bench'").Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n >= b.N {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sagas/s")
	if _, err := db.Exec(ctx, "DELETE FROM sy_sagas"); err != nil {
		b.Fatal(err)
	}
	db.Exec(ctx, "DELETE FROM sy_saga_history")
}
