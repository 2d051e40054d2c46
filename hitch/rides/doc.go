// Package rides is Hitch's rides service: it owns the ride's lifecycle,
// from a rider's request to the payment's outcome, and nothing else.
//
//	searching ──match.found──► matched ──start──► started ──finish──► finished ──payment.charged──► paid
//	    │ match.none              │                                        └──payment.failed───► payment_failed
//	    ▼                         │ cancel (rider or driver)
//	no_driver      cancelled ◄────┘ (also from searching, by the rider)
//
// # Pattern: event sourcing (kit/eventstore)
//
// Each ride is a stream ("ride-<id>") whose events are the very Hitch
// events the service announces (ride.requested, ride.matched, ...,
// payloads from package hitch). A command loads the ride by folding its
// stream (eventstore.Aggregate), decides, and saves the new events with
// the version it loaded as the expected one: two commands on one ride
// (a cancel racing a match, two replicas handling one redelivered
// message) cannot both win; the loser loads again and decides again. The
// notes' reasons hold here: the ride's history is the audit trail (who
// cancelled, when each step happened, the fare as computed then), and
// every write is an append.
//
// Every change commits in one transaction: the stream's events, the
// outgoing messages in the transactional outbox (kit/outbox, to
// "topic:"+hitch.TopicRides, message id = event id, key = ride id), the
// ride's row in the rides table, and for consumed messages the inbox
// record (kit/inbox). So an event is published iff it happened, and a
// message delivered twice changes nothing.
//
// # Reads: an inline projection
//
// GET /v1/rides/{id} reads the rides table, written in the same
// transaction as the events (an inline, synchronous projection), rather
// than folding the stream: one indexed row instead of reading and
// decoding every event, and still read-your-writes (the row commits with
// the events). The table also answers what no single stream can: "does
// this rider already have an active ride?" (a partial unique index, so
// two concurrent requests cannot both create one). The stream stays the
// source of truth: RebuildTable refolds every stream into the table.
//
// # Messages
//
// It consumes hitch.QueueRidesMatching (match.found, match.none) and
// hitch.QueueRidesPayments (payment.charged, payment.failed) through a
// kit/message Router, each message applied in an inbox transaction. A
// match.found for a ride that is no longer searching (cancelled
// meanwhile, or otherwise taken) is answered with ride.cancelled for
// that driver, so matching frees the seat it reserved.
package rides
