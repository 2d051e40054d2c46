package cardprocessor_test

import (
	"encoding/json"
	"testing"

	"github.com/switchyard/switchyard/hitch/cardprocessor"
)

// FuzzParse feeds arbitrary bodies to every request parser: none may
// panic, and whatever a parser accepts must be within its limits and parse
// again to the same value after re-encoding (so its idempotency hash is
// stable).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"amount_cents": 1750, "currency": "usd", "card": "c", "customer": "ann", "description": "ride"}`,
		`{"charge_id": "ch_1", "amount_cents": 5}`,
		`{"driver": "dan", "amount_cents": 800, "currency": "usd"}`,
		`{"fail_rate": 0.5, "latency": "200ms", "phase": "after", "decline_prefixes": ["x"]}`,
		`{"amount_cents": -1}`, `{}`, `[]`, `null`, `{"latency": 5}`, "{\"card\": \"\\u0000\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if c, err := cardprocessor.ParseCharge(body); err == nil {
			if c.AmountCents <= 0 || c.AmountCents > cardprocessor.MaxAmountCents || c.Card == "" || len(c.Currency) != 3 {
				t.Fatalf("accepted charge %+v", c)
			}
			b, _ := json.Marshal(c)
			if c2, err := cardprocessor.ParseCharge(b); err != nil || c2 != c {
				t.Fatalf("charge %+v re-parsed as %+v, %v", c, c2, err)
			}
		}
		if r, err := cardprocessor.ParseRefund(body); err == nil {
			if r.AmountCents <= 0 || r.ChargeID == "" {
				t.Fatalf("accepted refund %+v", r)
			}
		}
		if p, err := cardprocessor.ParsePayout(body); err == nil {
			if p.AmountCents <= 0 || p.Driver == "" {
				t.Fatalf("accepted payout %+v", p)
			}
		}
		if fl, err := cardprocessor.ParseFaults(body); err == nil {
			if fl.FailRate+fl.TimeoutRate > 1 || fl.DeclineRate < 0 || fl.DeclineRate > 1 || fl.Latency < 0 {
				t.Fatalf("accepted faults %+v", fl)
			}
			b, _ := json.Marshal(fl)
			if _, err := cardprocessor.ParseFaults(b); err != nil {
				t.Fatalf("faults %s do not parse again: %v", b, err)
			}
		}
		_ = cardprocessor.CheckKey(string(body))
	})
}
