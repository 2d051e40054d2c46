package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
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
		`b.yaml:4:25: queues.orders.visibility_timeout: invalid duration "30": expected a duration such as "250ms" or "10s" (did you mean "30s"? a duration needs a unit)`,
		`b.yaml:5:21: queues.orders.max_deliveries: expected an integer, got "five"`,
		`b.yaml:6:5: queues.orders.visibilty_timeout: unknown key "visibilty_timeout": did you mean "visibility_timeout"? expected one of async_acks, `,
		`b.yaml:7:17: queues.orders.async_acks: expected true or false, got "maybe"`,
		`b.yaml:8:5: queues.orders.overflow: "drop": want reject or block`, // reported with the rest, at its key
		`b.yaml:11:13: topics.rides.queues: expected a list, got "orders" (did you mean [orders]?)`,
		`b.yaml:12:1: streems: unknown key "streems": did you mean "streams"? expected one of auth, data, fsync, preallocate, queues, segment_bytes, streams, tls, topics`,
		`b.yaml:13:8: fsync: parsing fsync policy "sometimes": want always, batch, interval:DURATION or never`,
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
		`b.yaml:3:5: queues.orders.overflow: "drop": want reject or block`,
		`b.yaml:4:3: queues.a b: invalid queue name`,
		`b.yaml:5:1: segment_bytes: -1: must be between 1048576 (1 MiB) and 1 GiB`,
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
	if err == nil || err.Error() != "b.yaml:1:1: expected a YAML mapping at the top level with keys auth, data, fsync, preallocate, queues, segment_bytes, streams, tls, topics, got a list" {
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
		fc, err := ParseFile("f.yaml", data)
		if err == nil {
			if verr := fc.Validate(); verr != nil {
				t.Fatalf("%q: accepted, but Validate says %v", data, verr)
			}
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
		{"preallocate: -1\n", "b.yaml:1:1: preallocate: -1 must not be negative"},
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

// TestFileConfigShapes: an empty file and a null document configure
// nothing; flow style, anchors, aliases and merge keys decode, and a
// problem reached through them is named where it is written.
func TestFileConfigShapes(t *testing.T) {
	for _, empty := range []string{"", "# nothing yet\n", "~\n", "null\n", "---\n"} {
		fc, err := ParseFile("b.yaml", []byte(empty))
		if err != nil || fc.Queues != nil || fc.Dir != "" {
			t.Errorf("ParseFile(%q) = %+v, %v; want nothing configured", empty, fc, err)
		}
	}
	const shared = `queues:
  base: &base {max_length: 10, visibility_timeout: 1m30s, dedup_window: -1s}
  orders:
    <<: *base
    overflow: block
  payments: *base
topics: {rides: {queues: [orders, payments]}}
`
	fc, err := ParseFile("b.yaml", []byte(shared))
	if err != nil {
		t.Fatal(err)
	}
	o, p := fc.Queues["orders"], fc.Queues["payments"]
	if o.MaxLength != 10 || o.Overflow != "block" || o.VisibilityTimeout.Std() != 90*time.Second || o.DedupWindow.Std() != -time.Second ||
		p.MaxLength != 10 || len(fc.Topics["rides"].Queues) != 2 {
		t.Errorf("decoded %+v", fc)
	}

	for _, c := range []struct{ yaml, want string }{
		// A bad value in a merged mapping is named where it is written,
		// with the merge that brought it in.
		{"queues:\n  base: &base {max_length: many}\n  orders:\n    <<: *base\n",
			`b.yaml:2:28: queues.base.max_length: expected an integer, got "many"`},
		{"queues:\n  base: &base {max_lenght: 1}\n  orders: {<<: *base}\n",
			`b.yaml:2:16: queues.base.max_lenght: unknown key "max_lenght": did you mean "max_length"?`},
		// Validation problems of what arrived through a merge are named
		// by the merging queue's key path, where the value is written.
		{"queues:\n  base: &base {overflow: drop}\n  orders:\n    <<: *base\n",
			`b.yaml:2:16: queues.orders.overflow: "drop": want reject or block`},
		{"streams: {s: {max_age: 1 h}}\n", `b.yaml:1:24: streams.s.max_age: invalid duration "1 h": expected a duration such as "250ms" or "10s" (did you mean "1h"?)`},
		{"topics:\n  t:\n    queues: [a, 'b c']\n", `b.yaml:3:17: topics.t.queues[1]: "b c": invalid queue name`},
		{"fsync: {interval: 1s}\n", `b.yaml:1:8: fsync: expected a single value such as "batch", got a mapping`},
	} {
		_, err := ParseFile("b.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseFile(%q) = %v\nwant it to contain %s", c.yaml, err, c.want)
		}
	}

	// A bad value is reported once: not again by validation of the zero
	// value left in its place.
	_, err = ParseFile("b.yaml", []byte("segment_bytes: lots\nqueues: {q: {overflow: drop}}\n"))
	if err == nil || strings.Count(err.Error(), "segment_bytes") != 1 || !strings.Contains(err.Error(), `queues.q.overflow: "drop"`) {
		t.Errorf("got %v", err)
	}
}

// TestFileConfigValidateText: Validate (for a FileConfig built in code)
// names each key path in its text, and Apply keeps the engine's cause.
func TestFileConfigValidateText(t *testing.T) {
	fc := FileConfig{
		Queues: map[string]broker.QueueConfig{"orders": {Overflow: "drop", MaxLength: -1}, "a b": {}},
		Topics: map[string]broker.TopicConfig{"t": {Queues: []string{"x y"}}},
	}
	got := fc.Validate().Error()
	want := `queues.a b: invalid queue name
queues.orders.max_length -1: must not be negative
queues.orders.overflow "drop": want reject or block
topics.t.queues[0] "x y": invalid queue name`
	if got != want {
		t.Errorf("Validate:\n%s\nwant:\n%s", got, want)
	}
	e := newEnv(t)
	err := FileConfig{Topics: map[string]broker.TopicConfig{"t": {Queues: []string{"nope"}}}}.Apply(e.b)
	if !errors.Is(err, broker.ErrInvalid) || !strings.HasPrefix(err.Error(), "topics.t: ") {
		t.Errorf("Apply: %v", err)
	}
	parsed, err := ParseFile("b.yaml", []byte("topics:\n  t:\n    queues: [nope]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Apply(e.b); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("located Apply error lost its cause: %v", err)
	}
}
