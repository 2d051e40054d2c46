package server

import (
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker/engine"
)

// TestFileConfigErrorsLocated: every problem of a config file is
// reported at once, each as FILE:LINE:COLUMN: KEY.PATH: what was given and
// what was expected; unknown keys get a suggestion; never a Go type name.
func TestFileConfigErrorsLocated(t *testing.T) {
	const bad = `data: /tmp/x
queues:
  orders:
    visibility_timeout: 30
    max_deliveries: five
    visibilty_timeout: 3s
    async_acks: maybe
    overflow: drop
topics:
  rides:
    queues: orders
streems: {}
fsync: sometimes
`
	_, err := ParseFile("b.yaml", []byte(bad))
	if err == nil {
		t.Fatal("accepted")
	}
	got := err.Error()
	for _, want := range []string{
		`b.yaml:4:25: queues.orders.visibility_timeout: expected a duration like "30s", got 30`,
		`b.yaml:5:21: queues.orders.max_deliveries: expected an integer, got "five"`,
		`b.yaml:6:5: queues.orders.visibilty_timeout: unknown key, did you mean "visibility_timeout"?`,
		`b.yaml:7:17: queues.orders.async_acks: expected true or false, got "maybe"`,
		`b.yaml:8:15: queues.orders.overflow "drop": want reject or block`, // reported with the rest
		`b.yaml:11:13: topics.rides.queues: expected a list like [a, b], got "orders"`,
		`b.yaml:12:1: streems: unknown key, did you mean "streams"?`,
		`b.yaml:13:8: fsync: expected always, batch, interval:DURATION or never, got "sometimes"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	for _, internal := range []string{"broker.", "Duration", "int64", "!!", "unmarshal", "Go "} {
		if strings.Contains(got, internal) {
			t.Errorf("error shows %q:\n%s", internal, got)
		}
	}

	// Settings that parse but are invalid are located at their key.
	_, err = ParseFile("b.yaml", []byte("queues:\n  orders:\n    overflow: drop\n  \"a b\": {}\nsegment_bytes: -1\n"))
	for _, want := range []string{
		`b.yaml:3:15: queues.orders.overflow "drop": want reject or block`,
		`b.yaml:4:3: queues.a b: invalid queue name`,
		`b.yaml:5:16: segment_bytes -1: must be between 1048576 (1 MiB) and 1 GiB`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}

	// YAML syntax errors name the line.
	_, err = ParseFile("b.yaml", []byte("queues:\n  a:\n    max_length: [1\n"))
	// (yaml reports the line where the construct it could not finish
	// began: line 2 here.)
	if err == nil || !strings.HasPrefix(err.Error(), "b.yaml:2: invalid YAML: did not find expected ',' or ']'") {
		t.Errorf("syntax: %v", err)
	}
	_, err = ParseFile("b.yaml", []byte("- a\n- b\n"))
	if err == nil || err.Error() != "b.yaml:1:1: expected a mapping of settings (data, fsync, queues, ...), got a list" {
		t.Errorf("top level list: %v", err)
	}
	_, err = ParseFile("b.yaml", []byte("queues:\n  a: {}\n  a: {}\n"))
	if err == nil || !strings.Contains(err.Error(), "b.yaml:3:3: queues.a: ") {
		t.Errorf("duplicate: %v", err)
	}
	// An empty file, and a valid one, are fine.
	if _, err := ParseFile("b.yaml", nil); err != nil {
		t.Errorf("empty: %v", err)
	}
	fc, err := ParseFile("b.yaml", []byte("queues:\n  orders:\n    max_length: 0x10\n    dedup_window: 1m\n    async_acks: true\ntopics:\n  t:\n    queues: [orders]\n"))
	if err != nil || fc.Queues["orders"].MaxLength != 16 || !fc.Queues["orders"].AsyncAcks || fc.Topics["t"].Queues[0] != "orders" {
		t.Errorf("valid: %+v %v", fc, err)
	}
}

// FuzzParseFile: any document is parsed or refused with a located error,
// never a panic or a Go type name.
func FuzzParseFile(f *testing.F) {
	for _, s := range []string{"streams:\n ? 0:", "queues:\n  ? [a]: {}\n", "queues:\n  a:\n    max_length: 1\n", "fsync: x\n", "- 1\n", "queues: [1]\n", "a: &x [*x]\n",
		"topics:\n  t:\n    queues: {a: 1}\n", "streams:\n  s:\n    max_age: 1h\n    max_bytes: 1e3\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseFile("f.yaml", data)
		if err == nil {
			return
		}
		if !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Fatalf("error without the file: %v", err)
		}
		for _, internal := range []string{"broker.", "!!int", "!!str", "!!map", "!!seq", "unmarshal"} {
			if strings.Contains(err.Error(), internal) && !strings.Contains(string(data), internal) {
				t.Fatalf("%q: error shows %q: %v", data, internal, err)
			}
		}
	})
}

// TestFileConfigApplyErrorsLocated: problems found when declaring (a
// topic bound to a queue that does not exist) point into the file too.
func TestFileConfigApplyErrorsLocated(t *testing.T) {
	fc, err := ParseFile("b.yaml", []byte("topics:\n  rides:\n    queues: [nope]\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	err = fc.Apply(e.b)
	if err == nil || !strings.HasPrefix(err.Error(), "b.yaml:2:3: topics.rides: ") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("got %v", err)
	}
}

func TestFileConfig(t *testing.T) {
	good := `
fsync: interval:50ms
preallocate: 4194304
queues:
  orders:
    max_length: 10
    overflow: block
topics:
  rides:
    queues: [orders]
streams:
  loc:
    max_age: 24h
`
	fc, err := ParseFile("b.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if fc.Fsync.String() != "interval:50ms" || fc.Preallocate != 4<<20 || fc.Queues["orders"].MaxLength != 10 || fc.Streams["loc"].MaxAge.Std() != 24*time.Hour {
		t.Fatalf("parsed %+v", fc)
	}
	e := newEnv(t)
	if err := fc.Apply(e.b); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ yaml, want string }{
		{"queues:\n  orders:\n    visibility: 1s\n", `b.yaml:3:5: queues.orders.visibility: unknown key`},
		{"queues:\n  orders:\n    overflow: drop\n    max_length: -1\n", "queues.orders.overflow"},
		{"streams:\n  s:\n    max_bytes: -1\n", "streams.s.max_bytes"},
		{"fsync: sometimes\n", "b.yaml"},
		{"preallocate: -1\n", "b.yaml:1:14: preallocate: -1 must not be negative"},
		{"queues:\n  orders:\n    visibility_timeout: soon\n", "b.yaml"},
	} {
		_, err := ParseFile("b.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseFile(%q) = %v, want mention of %q", c.yaml, err, c.want)
		}
	}
}

// TestFileConfigSegmentBytesLimit: the file's segment_bytes has the
// engine's bounds.
func TestFileConfigSegmentBytesLimit(t *testing.T) {
	if err := (FileConfig{SegmentBytes: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "segment_bytes 1") {
		t.Errorf("error %v, want it to contain %q", err, "segment_bytes 1")
	}
}

type env struct{ b *engine.Broker }

// newEnv opens a broker on a fresh directory, closed when the test ends.
func newEnv(t *testing.T) *env {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return &env{b: b}
}
