//go:build !linux

package up

import (
	"errors"
	"os"
	"syscall"
)

// sysProcAttr puts a child in its own process group. Outside Linux there
// is no Pdeathsig: a child of a hitch up that was SIGKILLed stays until it
// is stopped by hand.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func killProcess(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

var errNoPause = errors.New("pausing a process needs Linux (SIGSTOP)")

func pauseProcess(int) error  { return errNoPause }
func resumeProcess(int) error { return errNoPause }
