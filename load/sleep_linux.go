package load

import (
	"syscall"
	"time"
)

// preciseSleep blocks the calling thread in nanosleep(2), which the kernel
// wakes within microseconds, unlike Go timers (see pacer).
func preciseSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var left syscall.Timespec
		if err := syscall.Nanosleep(&ts, &left); err != syscall.EINTR {
			return
		}
		ts = left
	}
}
