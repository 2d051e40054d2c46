//go:build race

package saga_test

// raceEnabled trims the crash test under the race detector, which makes
// every child process several times slower.
const raceEnabled = true
