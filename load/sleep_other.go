//go:build !linux

package load

import "time"

// preciseSleep falls back to time.Sleep where nanosleep is not wired up.
func preciseSleep(d time.Duration) { time.Sleep(d) }
