package cardprocessor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on what a request may carry.
const (
	maxBody        = 16 << 10 // bytes of a request body
	maxKeyLen      = 255      // bytes of an Idempotency-Key
	maxRefLen      = 200      // bytes of a card, customer or driver reference
	maxDescLen     = 1000     // bytes of a description
	MaxAmountCents = 100_000_000
)

// ChargeRequest is the body of POST /v1/charges.
type ChargeRequest struct {
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Card        string `json:"card"`
	Customer    string `json:"customer"`
	Description string `json:"description"`
}

// RefundRequest is the body of POST /v1/refunds.
type RefundRequest struct {
	ChargeID    string `json:"charge_id"`
	AmountCents int64  `json:"amount_cents"`
}

// PayoutRequest is the body of POST /v1/payouts.
type PayoutRequest struct {
	Driver      string `json:"driver"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"` // default "usd"
}

// fieldError is a request problem naming its field; answered 400.
type fieldError struct {
	Field string
	Msg   string
}

func (e *fieldError) Error() string { return e.Field + ": " + e.Msg }

// decodeStrict reads exactly one JSON object into v, refusing unknown
// fields and trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &fieldError{Field: "body", Msg: "invalid JSON: " + err.Error()}
	}
	if dec.More() {
		return &fieldError{Field: "body", Msg: "trailing data after the JSON object"}
	}
	return nil
}

func checkAmount(field string, v int64) error {
	if v <= 0 || v > MaxAmountCents {
		return &fieldError{Field: field, Msg: fmt.Sprintf("%d: want 1 to %d cents", v, MaxAmountCents)}
	}
	return nil
}

func checkRef(field, v string, required bool, max int) error {
	switch {
	case v == "" && required:
		return &fieldError{Field: field, Msg: "required"}
	case len(v) > max:
		return &fieldError{Field: field, Msg: fmt.Sprintf("%d bytes: want at most %d", len(v), max)}
	case !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return &fieldError{Field: field, Msg: "must be UTF-8 text without control characters"}
	}
	return nil
}

func checkCurrency(v string) error {
	if len(v) != 3 || strings.ToLower(v) != v || strings.ContainsFunc(v, func(r rune) bool { return r < 'a' || r > 'z' }) {
		return &fieldError{Field: "currency", Msg: fmt.Sprintf("%q: want a three-letter lowercase ISO 4217 code such as \"usd\"", v)}
	}
	return nil
}

// ParseCharge decodes and validates a charge request.
func ParseCharge(body []byte) (ChargeRequest, error) {
	var c ChargeRequest
	if err := decodeStrict(body, &c); err != nil {
		return c, err
	}
	return c, errors.Join(checkAmount("amount_cents", c.AmountCents), checkCurrency(c.Currency),
		checkRef("card", c.Card, true, maxRefLen), checkRef("customer", c.Customer, false, maxRefLen),
		checkRef("description", c.Description, false, maxDescLen))
}

// ParseRefund decodes and validates a refund request.
func ParseRefund(body []byte) (RefundRequest, error) {
	var r RefundRequest
	if err := decodeStrict(body, &r); err != nil {
		return r, err
	}
	return r, errors.Join(checkRef("charge_id", r.ChargeID, true, maxRefLen), checkAmount("amount_cents", r.AmountCents))
}

// ParsePayout decodes and validates a payout request.
func ParsePayout(body []byte) (PayoutRequest, error) {
	var p PayoutRequest
	if err := decodeStrict(body, &p); err != nil {
		return p, err
	}
	if p.Currency == "" {
		p.Currency = "usd"
	}
	return p, errors.Join(checkRef("driver", p.Driver, true, maxRefLen), checkAmount("amount_cents", p.AmountCents), checkCurrency(p.Currency))
}

// CheckKey validates an Idempotency-Key: 1 to 255 bytes of printable ASCII.
func CheckKey(k string) error {
	if k == "" {
		return &fieldError{Field: "Idempotency-Key", Msg: "header required"}
	}
	if len(k) > maxKeyLen {
		return &fieldError{Field: "Idempotency-Key", Msg: fmt.Sprintf("%d bytes: want at most %d", len(k), maxKeyLen)}
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return &fieldError{Field: "Idempotency-Key", Msg: fmt.Sprintf("byte %d is 0x%02x: want printable ASCII", i, k[i])}
		}
	}
	return nil
}

// hashOf is the request fingerprint stored with an idempotency key: the
// SHA-256 of the parsed request re-encoded, so spacing and field order do
// not matter but any value does.
func hashOf(v any) string {
	b, _ := json.Marshal(v) // structs of strings and integers: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
