//go:build !linux

package wal

import (
	"errors"
	"os"
)

// fallocate is Linux-only here; elsewhere segments grow with their writes.
func fallocate(f *os.File, off, n int64) error { return errors.ErrUnsupported }
