// Package payments is Hitch's payments service: when a ride finishes it
// charges the rider the fare, keeps the service fee and pays the driver
// the rest, each exactly once, through the card processor
// (hitch/cardprocessor, a separate process reached over HTTP).
//
// # What it owns
//
// Its own database (migration component "hitch-payments"): one row per
// ride's payment (pay_payments: state pending, charged, paid or failed, the
// processor's charge, payout and refund ids, the reason of a failure), the
// double-entry ledger (pay_ledger_tx, pay_ledger_entries), and the kit's
// tables for its saga (sy_sagas), outbox and inbox.
//
// # Patterns of the notes, and why
//
// Saga (orchestration, kit/saga). Charging a card and paying a driver are
// effects in another system (the processor) that cannot share a
// transaction with this database, so the payment is a saga whose every
// transition is committed before the next step starts; a replica killed
// anywhere resumes the saga where it was, and one replica at a time drives
// it. The steps (saga "hitch-ride-payment", id = the ride id):
//
//  1. charge-rider: POST /v1/charges {fare} with key hitch/ride/ID/charge.
//     Succeeded: ledger "ID/charge" (rider:R -fare, processor:clearing
//     +fare), state charged, event payment.charged. Declined, or refused with
//     a 4xx: state failed, event payment.failed, the saga ends (nothing
//     completed, nothing to undo, no money moved).
//     Compensation (when step 2 fails for good): POST /v1/refunds {charge,
//     fare} with key hitch/ride/ID/refund; ledger "ID/refund" (rider:R
//     +fare, processor:clearing -fare), state failed, event payment.failed.
//  2. pay-driver: POST /v1/payouts {driver, fare - fee} with key
//     hitch/ride/ID/payout. Paid: ledger "ID/payout" (processor:clearing
//     -fare, driver:D +(fare - fee), platform:fees +fee), state paid, event
//     payout.paid. Refused for good (the driver's account is closed): the
//     saga compensates step 1 (the rider is refunded).
//
// A step that fails for a transient reason (5xx, a timeout, the breaker
// open, this process killed) is retried with backoff, without a limit:
// giving up on a charge whose outcome is unknown could leave a rider
// charged for a ride reported unpaid, so the saga waits for a definitive
// answer, and the wait is visible (GET /v1/payments/{ride_id} shows the
// step, the attempt and the last error). A refund the processor refuses
// parks the saga for an operator (saga.Retry).
//
// Idempotency keys. Every call to the processor carries a key derived from
// the ride id alone, so whichever replica asks, after whichever crash or
// timeout, asks with the same key, and the processor answers with the
// charge it already made instead of making a second one. That is what makes
// the retries above, and the resilient client's own retries, safe.
//
// Double-entry ledger. Every movement of money is a ledger transaction
// whose entries sum to zero, in integer cents, written in the same
// database transaction as the payment's state and its outbox event, once
// per ride and kind (the transaction id "ID/kind" is a primary key, and the
// step's write is fenced by the saga's claim). So the sum over all
// accounts is always zero (GET /v1/ledger/balance), a completed ride leaves
// rider -fare, driver +(fare - fee), platform:fees +fee and
// processor:clearing 0, and platform:fees + processor:clearing equals
// what the processor holds (its charges - refunds - payouts).
//
// Transactional outbox and idempotent consumer (kit/outbox, kit/inbox).
// ride.finished is read from hitch.QueuePaymentsRides through the inbox,
// which starts the saga in the same transaction that records the event as
// processed; a second ride.finished for the same ride finds the payment
// and saga there. Events go out through the outbox to hitch.TopicPayments,
// with ids derived from the ride ("payments/ID/charged", ".../payout",
// ".../failed"), so a re-relayed event is dropped by the broker's dedup
// window and the consumers' inboxes.
//
// Resilient calls (kit/resilient). The processor is called through a
// timeout per call and per attempt, retries with a budget on 5xx, timeouts,
// resets and refused connections (safe only because of the keys), and a
// circuit breaker that fails calls at once while the processor is failing,
// so a processor outage costs the sagas a backoff, not a thread each.
//
// Note for consumers: payment.charged can be followed by payment.failed for
// the same ride when the payout turns out impossible and the charge is
// refunded; the last word is payment.failed.
//
// # API (internal: tests and the operator; the gateway does not route it)
//
//	GET /v1/payments/{ride_id}  the payment, with its saga's state, step, attempt and last error
//	GET /v1/ledger/balance      every account's balance, the total (0) and any unbalanced transaction
//	GET /healthz
package payments
