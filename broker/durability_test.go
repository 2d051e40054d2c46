package broker

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/wal"
)

// TestDataDirLocked: a second broker on the same data directory is refused
// with an error naming the holder, and can open once the first closed.
func TestDataDirLocked(t *testing.T) {
	e := newEnv(t)
	_, err := Open(e.cfg)
	var le *wal.LockedError
	if !errors.As(err, &le) || !errors.Is(err, wal.ErrLocked) {
		t.Fatalf("second Open on the same directory: %v, want a *wal.LockedError", err)
	}
	if le.PID != os.Getpid() || !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("error %q does not name the holder pid %d", err, os.Getpid())
	}
	e.restart() // Close releases the lock
	if _, err := Open(e.cfg); err == nil {
		t.Fatal("second Open after restart succeeded")
	}
}
