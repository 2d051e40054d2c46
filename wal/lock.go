package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockName is the lock file LockDir takes in a directory.
const LockName = "LOCK"

// ErrLocked is wrapped by LockDir's error when another process (or another
// open in this process) holds the directory.
var ErrLocked = errors.New("directory locked")

// LockedError reports a directory held by another holder.
type LockedError struct {
	Path string // the lock file
	PID  int    // the holder's process id as written in the file; 0 if unknown
}

func (e *LockedError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data directory %q is in use by %s (lock file %s held): "+
		"two brokers on one directory would hand out the same ids and lose messages; stop the other one or use another directory",
		filepath.Dir(e.Path), who, e.Path)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// DirLock is an exclusive lock on a directory, held until Unlock (or the
// end of the process: the operating system releases it on exit, even after
// a crash or SIGKILL, so a stale file never blocks a restart).
type DirLock struct {
	f *os.File
}

// LockDir takes an exclusive, non-blocking lock on dir/LOCK (flock), and
// writes this process's id into the file. If the lock is held, it fails at
// once with a *LockedError naming the holder's pid.
func LockDir(dir string) (*DirLock, error) {
	p := filepath.Join(dir, LockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := flock(f); err != nil {
		data, _ := os.ReadFile(p)
		f.Close()
		if errors.Is(err, ErrLocked) {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
			return nil, &LockedError{Path: p, PID: pid}
		}
		return nil, fmt.Errorf("locking %q: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// Unlock releases the lock. The file stays (deleting it would race with a
// process about to lock it).
func (l *DirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}
