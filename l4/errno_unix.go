//go:build unix

package l4

import (
	"errors"
	"syscall"
)

// resourceExhausted reports whether an accept failed for want of
// resources (file descriptors of the process or the system, buffer or
// kernel memory): a condition that passes, so the listener backs off and
// accepts again rather than stopping for good.
func resourceExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
