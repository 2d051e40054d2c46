//go:build unix

package l4

import "syscall"

var errTooManyFiles error = syscall.EMFILE
