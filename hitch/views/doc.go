// Package views is Hitch's read models: a rider's receipt for a ride
// (GET /v1/rides/{id}/receipt) and a driver's earnings (GET
// /v1/drivers/me/earnings). It owns no business decision; it answers
// queries that need data owned by two services (rides and payments).
//
// # Pattern: CQRS with materialized views (kit/projection)
//
// The notes' query side: "one query service subscribes to all of their
// events and stores the joined view". Views reads its two queues
// (hitch.QueueViewsRides, bound to the rides topic, and
// hitch.QueueViewsPayments, bound to the payments topic) through a
// kit/message Router and kit/inbox, and appends every event it accepts to
// a local log (kit/eventstore, one stream per ride, in arrival order). A
// kit/projection projector turns that log into two tables, receipts (one
// row per ride) and earnings (one row per driver), with its checkpoint
// committed with the tables.
//
// Why the local log: the queues are not replayable, and the producers'
// databases are theirs. Keeping the events views received makes the read
// model rebuildable from scratch at any time (Service.Rebuild: fresh
// tables, every event projected again, swapped in with one rename while
// the old tables keep answering), including after a change of the views'
// shape.
//
// # Any order, more than once
//
// The two queues are independent, so a ride's payment.charged may arrive
// before its ride.finished; a re-publish may arrive twice. The receipt
// row is therefore a set of facts, each column set by the first event
// that carries it (COALESCE) and never moved by a later one, so the row
// is the same for any order and any number of copies of the same events.
// A driver's earnings are never incremented by an event: each ride
// contributes a value computed from its row alone (finished: one ride;
// charged and not failed: gross and fee; payout: net paid), and the
// projection applies the difference between the row's contribution
// before and after each event. The earnings are thus the sum of the
// rides' contributions, whatever the order. Duplicates are dropped first
// by the inbox (the message id), and would change nothing anyway.
package views
