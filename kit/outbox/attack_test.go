package outbox_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// TestAddRefusesWhatNoBrokerTakes: a message no broker accepts (a TTL
// or delay beyond broker.MaxMessageTTL, a negative one, more than
// broker.MaxMessageSizeLimit bytes) committed fine and then failed every
// relay round for ever, holding back its destination's messages behind
// it (they stay "in order, until it works again", which it never does).
// Add refuses it, so the business transaction fails instead.
func TestAddRefusesWhatNoBrokerTakes(t *testing.T) {
	db := storetest.SQLite(t)
	prepare(t, db)
	ctx := context.Background()
	for name, m := range map[string]broker.Message{
		"ttl beyond the broker's maximum":   {Body: []byte("x"), TTL: 2 * broker.MaxMessageTTL},
		"delay beyond the broker's maximum": {Body: []byte("x"), Delay: broker.MaxMessageTTL + time.Hour},
		"negative ttl":                      {Body: []byte("x"), TTL: -time.Second},
		"larger than any queue accepts":     {Body: make([]byte, broker.MaxMessageSizeLimit+1)},
		// PostgreSQL refused these with its own error, SQLite stored
		// them: one service, two behaviours.
		"an id with a NUL byte":   {ID: "a\x00b", Body: []byte("x")},
		"a key that is not UTF-8": {Key: "\xff", Body: []byte("x")},
		"a key of several KiB":    {Key: strings.Repeat("k", 3000), Body: []byte("x")},
	} {
		err := db.InTx(ctx, func(tx *store.Tx) error { return outbox.Add(ctx, tx, "queue:rides", m) })
		if err == nil {
			t.Errorf("%s: Add accepted it", name)
		}
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_outbox").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d messages in the outbox (%v), want none", n, err)
	}
	if err := db.InTx(ctx, func(tx *store.Tx) error {
		return outbox.Add(ctx, tx, "queue:rides", broker.Message{Body: []byte("ok"), TTL: time.Hour, Delay: time.Minute})
	}); err != nil {
		t.Fatalf("a plain message: %v", err)
	}
}
