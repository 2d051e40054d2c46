// Package certfile keeps a value loaded from files (a certificate and
// key, a CA bundle, a TLS config built from them) current: it looks at
// the files' modification times and sizes at most once per Check when the
// value is asked for, and reloads it when they changed. A load that fails
// (a half-written pair: the key renamed into place, the certificate not
// yet) keeps the previous value, and is tried again when the files change
// again. tlsconf's FileCert and every certificate, client CA and client
// certificate that switchyard reloads without a restart go through it, so
// there is one reload mechanism. Standard library only (floor 0).
package certfile

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// DefaultCheck is how often, at most, a Watched looks at its files.
const DefaultCheck = time.Second

// Watched is a value loaded from files, reloaded when they change. Safe
// for concurrent use.
type Watched[T any] struct {
	paths []string
	load  func() (T, error)
	// Check is how often, at most, Get looks at the files (one stat of
	// each); DefaultCheck unless changed before first use (tests: 0 looks
	// at every Get).
	Check time.Duration

	mu      sync.Mutex
	cur     T
	stamp   string // of the files cur was loaded from
	failed  string // stamp that last failed to load
	checked time.Time
}

// Watch loads the value with load (which reads paths) and returns it
// watched; the error is load's.
func Watch[T any](paths []string, load func() (T, error)) (*Watched[T], error) {
	w := &Watched[T]{paths: paths, load: load, Check: DefaultCheck}
	stamp := Stamp(paths...)
	v, err := load()
	if err != nil {
		return nil, err
	}
	w.cur, w.stamp, w.checked = v, stamp, time.Now()
	return w, nil
}

// Get returns the current value, reloading it first when the files
// changed since the last look (at most every Check).
func (w *Watched[T]) Get() T {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if now.Sub(w.checked) < w.Check {
		return w.cur
	}
	w.checked = now
	stamp := Stamp(w.paths...)
	if stamp == w.stamp || stamp == w.failed {
		return w.cur
	}
	v, err := w.load()
	if err != nil {
		w.failed = stamp // tried again when a file changes again
		return w.cur
	}
	w.cur, w.stamp, w.failed = v, stamp, ""
	return w.cur
}

// Stamp is the files' state: path, modification time and size of each
// ("missing" for a file that cannot be read).
func Stamp(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			b.WriteString(p + ":missing;")
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", p, fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String()
}
