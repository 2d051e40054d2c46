// Package notifications is Hitch's push service: it tells each connected
// user what happened to their rides, over Server-Sent Events (GET
// /v1/events) or a WebSocket (GET /v1/events/ws), through the gateway.
//
// It owns no data and no database. Every replica subscribes live to the
// topics hitch.TopicRides, hitch.TopicMatching and hitch.TopicPayments
// (not to a durable queue: delivery is at most once, which the notes
// accept for a push whose loss costs nothing, because the client recovers
// the state by GET /v1/rides/{id}) and pushes to the clients connected to
// it. Every replica sees every event, so a user's tabs may sit on
// different replicas and each gets everything.
//
// # What is pushed to whom
//
//	event            to              from
//	driver_found     rider           ride.matched
//	passenger_found  driver          ride.matched
//	ride_started     rider, driver   ride.started
//	ride_finished    rider, driver   ride.finished (distance, fare, fee)
//	receipt          rider           payment.charged (amounts), or ride.paid
//	payout           driver          payout.paid
//	no_driver        rider           ride.no_driver or match.none
//	payment_failed   rider, driver   payment.failed (reason) or ride.payment_failed
//	ride_cancelled   rider, driver   ride.cancelled
//
// Every payload is a JSON object with "ride_id" (FoundData, RefData,
// FinishedData, ReceiptData, PayoutData). A fact that arrives from two
// sources (payment.charged then ride.paid) is pushed once per user and
// ride while this replica remembers it (Config.Replay notifications).
//
// # Protocol
//
// SSE: "id:" is the broker event's id, so it is the same on every
// replica: a client that reconnects, to this replica or another, with
// Last-Event-ID gets the notifications after that id which the replica
// still holds (Config.Replay), else only new ones. A comment line every
// Config.Heartbeat keeps idle connections open through proxies.
//
// WebSocket: one JSON text frame per notification, {"id", "event",
// "data"}; a ping every Config.Heartbeat. Clients send nothing: a data
// message closes the connection (1008), one over Config.ReadLimit too
// (1009). Last-Event-ID may be given as the header or ?last_event_id=.
//
// Both need the caller's identity from the gateway (hitch.CallerOf): 401
// without. A browser cannot set Authorization on EventSource or on a
// WebSocket, so hitch/web reads the SSE stream with fetch() and a
// ReadableStream reader, which can: the gateway verifies the token as on
// every other route, and the token never appears in a URL or log.
//
// # Slow clients
//
// Publishing never waits for a client: each has a bounded buffer
// (Config.ClientBuffer); one that fills it, or whose writes make no
// progress for Config.WriteTimeout, is disconnected (it reconnects with
// Last-Event-ID) and the others are not slowed.
package notifications
