// Package web is Hitch's web app: a single page with a rider view, a
// driver view and an operator view over a synthetic city drawn on a
// canvas, embedded in the binary (no build step, nothing fetched from
// another origin), and the handler that serves it with caching headers
// the gateway's edge cache can hold: hashed asset names that never change
// (immutable) and an ETag on the page.
//
// The app speaks only the public API through the gateway (/v1/...), with
// the bearer token from POST /v1/auth/login. Live status comes from GET
// /v1/events read with fetch() and a stream reader, because EventSource
// cannot send an Authorization header: so the gateway verifies the token
// as on any route and the token stays out of URLs and access logs.
//
// Element ids are stable for browser tests; docs/hitch.md lists them.
package web
