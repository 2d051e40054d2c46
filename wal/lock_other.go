//go:build !unix

package wal

import "os"

// flock is a no-op where flock(2) does not exist: the directory is not
// protected against a second process there.
func flock(*os.File) error { return nil }
