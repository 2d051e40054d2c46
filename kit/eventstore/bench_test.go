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
// plain multi-row INSERTs in one transaction per batch, with the same
// durability (the same database handle and settings). Each iteration
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
		err := db.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, q.String(), args...)
			return err
		})
		if err != nil {
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
