// Package message is the service kit's messaging: two small interfaces,
// Publisher and Subscriber, that every backend implements, a Router that
// runs handler functions per source behind middleware (retry with backoff,
// dead-lettering of poison messages, correlation and trace ids, timeouts,
// metrics, an inbox), and Open, which picks the backend from a URL
// ("switchyard://127.0.0.1:7070", "nats://127.0.0.1:4222") so a service
// moves between backends with no code change.
//
// Backends live in their own packages and register with Register, as
// database/sql drivers do: import kit/message/sybroker (switchyard's
// broker) or kit/message/jetstream (NATS JetStream) for its side effect.
// kit/message/messagetest is the contract suite both pass.
//
// Delivery is at least once on every backend: a handler must tolerate a
// message it has seen before (the inbox middleware of kit/inbox, or
// idempotent effects).
package message
