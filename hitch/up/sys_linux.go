package up

import "syscall"

// sysProcAttr puts a child in its own process group (a Ctrl-C at the
// terminal reaches only hitch up, which stops the children in order) and
// has the kernel kill it if hitch up dies without stopping it (Pdeathsig),
// so no child outlives the supervisor.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killProcess(pid int) error   { return syscall.Kill(pid, syscall.SIGKILL) }
func pauseProcess(pid int) error  { return syscall.Kill(pid, syscall.SIGSTOP) }
func resumeProcess(pid int) error { return syscall.Kill(pid, syscall.SIGCONT) }
