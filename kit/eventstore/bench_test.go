package eventstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/kit/eventstore"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// BenchmarkAppend measures the event store's append throughput against
// the database's own ceiling: the same rows, in a table of the same
// shape (primary key, unique id, unique stream+version), written with
// one plain multi-row INSERT per batch, a transaction of its own (one
// round trip: on PostgreSQL Append is one too; until the event store's
// was, the ceiling ran BEGIN, INSERT, COMMIT), with the same durability
// (the same database handle and settings). Each iteration
// does one of each, alternated, so load from elsewhere on the machine
// hits both alike; the metrics are each side's events/s and the event
// store's share of the ceiling in percent.
//
//	go test -run '^$' -bench Append -benchtime 200x ./kit/eventstore/
func BenchmarkAppend(b *testing.B) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *store.DB
	}{{"sqlite", storetest.SQLite}, {"postgres", storetest.Postgres}} {
		for _, batch := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("%s/batch=%d", d.name, batch), func(b *testing.B) {
				benchAppend(b, d.open(b), batch)
			})
		}
	}
}

var benchData = json.RawMessage(`{"rider":"r-1234","driver":"d-5678","fare":1250,"currency":"EUR"}`)

func benchAppend(b *testing.B, db *store.DB, batch int) {
	ctx := context.Background()
	es, err := eventstore.Open(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	_, err = db.Exec(ctx, `CREATE TABLE ceiling (
		position BIGINT PRIMARY KEY,
		stream TEXT NOT NULL,
		version BIGINT NOT NULL,
		id TEXT NOT NULL UNIQUE,
		type TEXT NOT NULL,
		schema_version INTEGER NOT NULL,
		data TEXT NOT NULL,
		metadata TEXT,
		causation_id TEXT,
		correlation_id TEXT,
		created_ms BIGINT NOT NULL,
		UNIQUE (stream, version))`)
	if err != nil {
		b.Fatal(err)
	}
	var esTime, ceilTime time.Duration
	var pos int64
	var q strings.Builder
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The event store.
		start := time.Now()
		evs := make([]eventstore.Event, batch)
		for j := range evs {
			evs[j] = eventstore.Event{Type: "RideFinished", Data: benchData, CorrelationID: "req-1"}
		}
		if _, err := es.Append(ctx, fmt.Sprintf("ride-%d", i), eventstore.NoStream, evs...); err != nil {
			b.Fatal(err)
		}
		esTime += time.Since(start)

		// The ceiling: the same rows, plain INSERT.
		start = time.Now()
		q.Reset()
		q.WriteString("INSERT INTO ceiling (position, stream, version, id, type, schema_version, data, metadata, causation_id, correlation_id, created_ms) VALUES ")
		args := make([]any, 0, batch*11)
		now := time.Now().UnixMilli()
		stream := fmt.Sprintf("ride-%d", i)
		for j := 0; j < batch; j++ {
			if j > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
			pos++
			args = append(args, pos, stream, j+1, eventstore.NewID(), "RideFinished", 1, string(benchData), nil, nil, "req-1", now)
		}
		if _, err := db.Exec(ctx, q.String(), args...); err != nil {
			b.Fatal(err)
		}
		ceilTime += time.Since(start)
	}
	esRate := float64(b.N*batch) / esTime.Seconds()
	ceilRate := float64(b.N*batch) / ceilTime.Seconds()
	b.ReportMetric(esRate, "es-events/s")
	b.ReportMetric(ceilRate, "ceiling-events/s")
	b.ReportMetric(100*esRate/ceilRate, "%-of-ceiling")
}

// BenchmarkAppendConcurrent is the same comparison with 8 appenders per
// core at once, one event per transaction, each appender on a stream of
// its own. Two ceilings: insert-ceiling is BEGIN, INSERT, COMMIT (three
// round trips, what the first event store did), insert-autocommit the
// INSERT alone in a transaction of its own (one round trip: what Append
// does on PostgreSQL, and the fairer ceiling for it). On SQLite both
// take the same path through the driver.
//
//	go test -run '^$' -bench AppendConcurrent -benchtime 2000x ./kit/eventstore/
func BenchmarkAppendConcurrent(b *testing.B) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *store.DB
	}{{"sqlite", storetest.SQLite}, {"postgres", storetest.Postgres}} {
		b.Run(d.name+"/eventstore", func(b *testing.B) {
			db := d.open(b)
			ctx := context.Background()
			es, err := eventstore.Open(ctx, db)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				stream := eventstore.NewID()
				v := eventstore.NoStream
				for pb.Next() {
					n, err := es.Append(ctx, stream, v, eventstore.Event{Type: "RideFinished", Data: benchData})
					if err != nil {
						b.Error(err)
						return
					}
					v = eventstore.Expected(n)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
		for _, auto := range []bool{false, true} {
			name := "/insert-ceiling"
			if auto {
				name = "/insert-autocommit"
			}
			b.Run(d.name+name, func(b *testing.B) { benchCeilingConcurrent(b, d.open(b), auto) })
		}
	}
}

func benchCeilingConcurrent(b *testing.B, db *store.DB, auto bool) {
	ctx := context.Background()
	// The same shape, the position from the database's own
	// counter (identity / rowid): what a naive store would do.
	posCol := "position INTEGER PRIMARY KEY"
	if db.Dialect == store.Postgres {
		posCol = "position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
	}
	if _, err := db.Exec(ctx, `CREATE TABLE ceiling (`+posCol+`,
				stream TEXT NOT NULL, version BIGINT NOT NULL, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
				schema_version INTEGER NOT NULL, data TEXT NOT NULL, metadata TEXT, causation_id TEXT,
				correlation_id TEXT, created_ms BIGINT NOT NULL, UNIQUE (stream, version))`); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		stream := eventstore.NewID()
		v := 0
		for pb.Next() {
			v++
			const ins = "INSERT INTO ceiling (stream, version, id, type, schema_version, data, created_ms) VALUES (?, ?, ?, ?, 1, ?, ?)"
			var err error
			if auto {
				_, err = db.Exec(ctx, ins, stream, v, eventstore.NewID(), "RideFinished", string(benchData), time.Now().UnixMilli())
			} else {
				err = db.InTx(ctx, func(tx *store.Tx) error {
					_, err := tx.Exec(ctx, ins, stream, v, eventstore.NewID(), "RideFinished", string(benchData), time.Now().UnixMilli())
					return err
				})
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
