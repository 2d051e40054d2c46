// Package matching is Hitch's matching service: it owns the drivers'
// availability (route and seats) and the seat reservations, and pairs
// riders with drivers going their way.
//
//	POST /v1/drivers/me/availability {ready, from: {lat, lon}, to: {lat, lon}, seats} -> 200 (drivers only)
//
// ready:true offers seats (1 to Config.MaxSeats, 8) on the straight route
// from `from` to `to`; posting again changes the route or the seats (409
// seats_reserved when fewer seats than are already reserved). ready:false
// withdraws: no new riders are matched; rides already matched keep their
// seats until they finish or are cancelled.
//
// # The matching rule
//
// A driver matches a rider when the rider's pickup and drop-off both lie
// within 0.5 mile (Config.CorridorMi) of the driver's straight route from
// `from` to `to`, in the driver's direction of travel (the pickup comes
// before the drop-off along the route), and a seat is free; among
// candidates the smallest detour wins (ties: the smaller driver id). No
// match within a configurable time (Config.MatchTimeout, 30 s from the
// ride's request) -> match.none, which the rides service turns into
// no_driver.
//
// The geometry is package hitch/geo's: the straight route is the
// great-circle arc, a point's distance from it is measured exactly on the
// sphere, "before along the route" compares the positions (0..1) of the
// points' nearest points on the arc, and the detour is
// |from-pickup| + |pickup-dropoff| + |dropoff-to| - |from-to| in
// great-circle miles. A route's padded bounding box (geo.Route.Box) is
// stored with it, so the candidates are found with an indexed range query
// and only those are measured exactly.
//
// # Patterns
//
// Database per service: the drivers' availability and the rides being
// matched (hm_drivers, hm_rides) are this service's own tables; nobody else
// reads them.
//
// Idempotent consumer (kit/inbox) on the queue hitch.QueueMatchingRides:
// ride.requested, ride.cancelled and ride.finished are applied in the same
// transaction that records their id, so a redelivery or a re-relayed copy
// changes nothing. Unknown kinds are acknowledged and ignored.
//
// Transactional outbox (kit/outbox): match.found is written in the SAME
// transaction as the seat reservation (and match.none with the ride's
// give-up), so the event goes out if and only if the seat was taken; the
// relay runs in Run. Event ids are stable per ride ("matching:found:RIDE",
// "matching:none:RIDE"): even a second emission would be deduplicated.
//
// Matching from both sides: a new ride is measured against the drivers
// with free seats (attempt); a driver whose seats become free (an offer, a
// cancelled or finished ride) is measured against the rides waiting
// (fill), oldest request first, in the same transaction that freed the
// seats. So a waiting rider is matched the moment a fitting seat appears,
// without every waiting ride being re-tried on every change.
//
// Timer table for the retries: a ride with no match yet stays in hm_rides
// in state searching with the time of its next check (next_ms) and its
// deadline; Run re-checks due rides every Config.RecheckEvery (a safety
// net for a ride and a driver committed at the same moment on PostgreSQL,
// each not seeing the other), and at the deadline gives up with
// match.none. A table, not a nack with a delay: the waits survive
// restarts and do not use up the queue's max_deliveries.
//
// # Replicas
//
// Several replicas consume the queue and run the re-checks on one database
// at once. Nothing doubles because every decision is a conditional write in
// one transaction: a ride becomes matched only by UPDATE ... WHERE state =
// 'searching' (a second replica blocks on the row, then finds it no longer
// searching and skips it), and a seat is taken only by UPDATE ... SET
// reserved = reserved + 1 WHERE reserved < seats AND version = (the route
// it was measured against), or under the driver row's lock. SQLite runs one
// writer at a time; on PostgreSQL (read committed) the row locks (SELECT
// ... FOR UPDATE) and re-checked WHERE clauses give the same result, and a
// deadlock between a ride's try and a driver's fill is retried by
// store.DB.InTx.
// TestTwoReplicas proves it with two Service instances.
package matching
