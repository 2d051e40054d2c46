package brokersource_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/kit/projection"
	"github.com/switchyard/switchyard/kit/projection/brokersource"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// startBroker runs a real broker on 127.0.0.1:0 with a "payments"
// stream, stopped when the test ends.
func startBroker(t *testing.T) string {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareStream("payments", broker.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		native.New(b, native.Options{}).Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		b.Close()
	})
	return ln.Addr().String()
}

// payments per rider is the read model; the payments service publishes
// to a broker stream, not to this service's event store.
var perRider = projection.Projection{
	Name:   "paid",
	Tables: []string{"paid"},
	Batch:  3,
	Create: func(ctx context.Context, tx *store.Tx, t projection.Tables) error {
		_, err := tx.Exec(ctx, "CREATE TABLE "+t.T("paid")+" (rider TEXT PRIMARY KEY, total BIGINT NOT NULL, n BIGINT NOT NULL)")
		return err
	},
	Handle: func(ctx context.Context, tx *store.Tx, t projection.Tables, src string, m projection.Message) error {
		if m.Type != "Charged" {
			return nil
		}
		var d struct{ Amount int64 }
		if err := json.Unmarshal(m.Data, &d); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+t.T("paid")+" (rider, total, n) VALUES (?, ?, 1) ON CONFLICT (rider) DO UPDATE SET total = "+t.T("paid")+".total + excluded.total, n = "+t.T("paid")+".n + 1", m.Stream, d.Amount)
		return err
	},
}

func TestBrokerStreamProjection(t *testing.T) {
	addr := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := map[string][2]int64{}
	publish := func(n int) {
		var msgs []broker.Message
		for i := range n {
			rider := fmt.Sprintf("r%d", i%3)
			amt := int64(10 + i)
			typ := "Charged"
			if i%5 == 4 {
				typ = "Ignored"
			} else {
				w := want[rider]
				want[rider] = [2]int64{w[0] + amt, w[1] + 1}
			}
			msgs = append(msgs, broker.Message{Body: fmt.Appendf(nil, `{"amount":%d}`, amt), Headers: map[string]string{"type": typ, "key": rider}})
		}
		if _, err := c.Append(ctx, "payments", msgs...); err != nil {
			t.Fatal(err)
		}
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		clear(want)
		src, err := brokersource.New(c, "payments", brokersource.Options{Name: "payments"})
		if err != nil {
			t.Fatal(err)
		}
		pr, err := projection.New(ctx, db, perRider, src)
		if err != nil {
			t.Fatal(err)
		}
		// The stream may hold the other dialect's run's messages: start
		// from them as the base.
		base := map[string][2]int64{}
		pr.CatchUp(ctx)
		for k, v := range readPaid(t, db) {
			base[k] = v
		}
		publish(10)
		lag, err := pr.Stats(ctx)
		if err != nil || lag[0].Events != 10 || lag[0].Source != "payments" {
			t.Fatalf("lag: %+v %v", lag, err)
		}
		if err := pr.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		publish(7)
		if err := pr.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		got := readPaid(t, db)
		for k, v := range want {
			b := base[k]
			if got[k] != [2]int64{b[0] + v[0], b[1] + v[1]} {
				t.Fatalf("rider %s: got %v, base %v + published %v", k, got[k], b, v)
			}
		}
		lag, _ = pr.Stats(ctx)
		if lag[0].Events != 0 || lag[0].Checkpoint != lag[0].Head {
			t.Fatalf("lag after catch-up: %+v", lag)
		}
		if err := pr.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		if again := readPaid(t, db); fmt.Sprint(again) != fmt.Sprint(got) {
			t.Fatalf("rebuild from the broker stream: %v, was %v", again, got)
		}
	})
}

func readPaid(t *testing.T, db *store.DB) map[string][2]int64 {
	rows, err := db.Query(context.Background(), "SELECT rider, total, n FROM paid")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2]int64{}
	for rows.Next() {
		var r string
		var v [2]int64
		rows.Scan(&r, &v[0], &v[1])
		out[r] = v
	}
	return out
}

func TestNewRejects(t *testing.T) {
	if _, err := brokersource.New(nil, "x", brokersource.Options{}); err == nil {
		t.Fatal("nil client accepted")
	}
}
