package certfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatched: a changed file is reloaded at the next Get, an unchanged
// one is not, a load that fails keeps the running value until the file
// changes again, and a missing file at the start is an error.
func TestWatched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v")
	write := func(s string, at time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = os.Chtimes(path, at, at)
	}
	loads := 0
	load := func() (string, error) {
		loads++
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if string(b) == "bad" {
			return "", errors.New("bad")
		}
		return string(b), nil
	}
	now := time.Now()
	write("one", now)
	w, err := Watch([]string{path}, load)
	if err != nil {
		t.Fatal(err)
	}
	w.Check = 0
	if w.Get() != "one" || w.Get() != "one" || loads != 1 {
		t.Fatalf("unchanged file: %d loads, want 1", loads)
	}
	write("two", now.Add(time.Second))
	if got := w.Get(); got != "two" {
		t.Fatalf("after a change: %q, want two", got)
	}
	write("bad", now.Add(2*time.Second))
	if got := w.Get(); got != "two" {
		t.Fatalf("after a bad change: %q, want the running two", got)
	}
	n := loads
	if w.Get(); loads != n {
		t.Fatal("the same bad file was loaded again")
	}
	write("three", now.Add(3*time.Second))
	if got := w.Get(); got != "three" {
		t.Fatalf("after a good change: %q, want three", got)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := Watch([]string{missing}, func() ([]byte, error) { return os.ReadFile(missing) }); err == nil {
		t.Fatal("missing file: no error")
	}
	w.Check = time.Hour // not looked at again within Check
	write("four", now.Add(4*time.Second))
	if got := w.Get(); got != "three" {
		t.Fatalf("within Check: %q, want three", got)
	}
}
