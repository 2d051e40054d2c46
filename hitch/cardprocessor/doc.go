// Package cardprocessor is Hitch's simulated external card processor: the
// stand-in for a payment provider such as Stripe, run as a process of its
// own so that the payments service meets a real remote dependency that can
// be slow, fail, decline cards and be killed.
//
// # What it owns
//
// Its own database (migration component "hitch-cardprocessor") with the
// money it moved: charges (cp_charges), refunds (cp_refunds) and payouts
// (cp_payouts). Tests count these rows to prove that every ride was charged
// exactly once and every driver paid exactly once, whatever happened to the
// caller in between.
//
// # API (internal: services call it directly, the gateway does not route it)
//
//	POST /v1/charges  {amount_cents, currency, card, customer, description}  Idempotency-Key required
//	     -> 201 {charge_id, status: "succeeded"|"declined", decline_code, ...}
//	POST /v1/refunds  {charge_id, amount_cents}                             Idempotency-Key required
//	     -> 201 {refund_id, charge_id, amount_cents}
//	POST /v1/payouts  {driver, amount_cents, currency}                      Idempotency-Key required
//	     -> 201 {payout_id, status: "paid"|"failed", failure_code, ...}
//	GET  /v1/charges/{id}, /v1/refunds/{id}, /v1/payouts/{id}
//	GET  /v1/summary            counts and sums of what was moved, and the requests seen
//	GET|POST|DELETE /v1/faults  the faults it injects (below)
//	GET  /healthz
//
// # Idempotency keys (the notes' pattern, on the provider's side)
//
// Every call that moves money carries an Idempotency-Key header. The first
// request with a key does the work and stores the result under the key,
// together with a hash of the request's parsed fields; a later request with
// the same key and the same fields gets the stored result (the same charge
// id, with the header Idempotent-Replayed: true) and moves no money; the same
// key with different fields is refused with 422 idempotency_key_reuse. The
// key is a unique column, so concurrent requests with one key produce one
// row. This is what lets a caller retry after a timeout without knowing
// whether its first attempt went through.
//
// # Breaking it on purpose
//
// POST /v1/faults sets the faults every money-moving call (POST charges,
// refunds, payouts) suffers:
//
//	{"decline_rate": 0.2,        // share of new charges declined (card_declined)
//	 "fail_rate": 0.3,           // share of calls answered 500
//	 "timeout_rate": 0.1,        // share of calls that hang until the client gives up (at most max_hang)
//	 "latency": "200ms",         // added to every call
//	 "max_hang": "30s",          // bound of a hang, default 30s
//	 "phase": "random",          // when a failure or hang strikes: "before" the work (nothing happened),
//	                             // "after" it (the money moved but the caller hears an error), or "random"
//	 "decline_prefixes": ["decline"],  // a charge whose card or customer starts with one always declines
//	 "closed_prefixes": ["closed"],    // a payout to a driver that starts with one fails: account_closed
//	 "seed": 1}                  // optional: makes the random draws repeatable
//
// GET shows them, DELETE resets them to none (keeping the default rules).
// The rules are deterministic, so tests need no luck: a card "decline-..."
// always declines and a driver "closed-..." can never be paid.
package cardprocessor
