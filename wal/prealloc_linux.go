//go:build linux

package wal

import (
	"errors"
	"os"
	"syscall"
)

// fallocate allocates n bytes of f from off, growing the file size (mode
// 0: the new bytes read as zeros). A file system without fallocate answers
// errors.ErrUnsupported.
func fallocate(f *os.File, off, n int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Fallocate(int(fd), 0, off, n)
			if ferr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if errors.Is(ferr, syscall.EOPNOTSUPP) || errors.Is(ferr, syscall.ENOSYS) {
		return errors.ErrUnsupported
	}
	return ferr
}
