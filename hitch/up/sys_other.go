//go:build !linux

package up

import "syscall"

// sysProcAttr puts a child in its own process group. Outside Linux there
// is no Pdeathsig: a child of a hitch up that was SIGKILLed stays until it
// is stopped by hand.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
