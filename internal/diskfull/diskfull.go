// Package diskfull holds the error of a full disk, shared by the write-ahead
// log (wal.ErrNoSpace) and the broker's public face (broker.ErrStorageFull)
// so that the broker's types need not import the log.
package diskfull

import "errors"

// ErrNoSpace is wal.ErrNoSpace and broker.ErrStorageFull.
var ErrNoSpace = errors.New("wal: no space left on device")
