// Package seglimit holds the smallest segment_bytes setting the broker
// accepts, a variable so that the engine's tests can lower it.
package seglimit

// Min is broker.MinSegmentBytes; tests lower it.
var Min int64 = 1 << 20
