package cli

import (
	"strings"
	"testing"
)

// TestDeclareIfAbsentHostileNames: names that are not broker names, or
// that a URL path would clean, encode or cut ("..", ".", "a/b", "a?b",
// "a#b", "%2e%2e", spaces, NUL, a 201-character name, a leading '-' or
// '.') are refused with exit 2 or 1 and create nothing, with and without
// --if-absent; no other queue is touched. Before, "declare queue .
// --if-absent" said "exists queue" and exited 0: the info request for
// "/v1/queues/." was redirected to the queue list, read as an empty queue
// (and "info queue ." showed it).
func TestDeclareIfAbsentHostileNames(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "jobs", "max_deliveries=3")
	for _, name := range []string{"..", ".", "a/b", "../jobs", "jobs/../x", "a?b", "a#b", "%2e%2e", "jobs%2F..", "a b", "a\x00b", "-x", ".x",
		strings.Repeat("q", 201), "é", "jobs\r\nX: y"} {
		for _, args := range [][]string{{"declare", "queue", name}, {"declare", "queue", name, "--if-absent"}, {"declare", "topic", name, "--if-absent"}, {"declare", "stream", name, "--if-absent"}} {
			if r := tb.run("", args...); r.code == 0 {
				t.Errorf("%q: exit 0 (%q), want a refusal", args, r.out)
			}
		}
	}
	for _, args := range [][]string{{"info", "queue", "."}, {"info", "topic", ".."}, {"info", "stream", "."}, {"delete", "queue", ".."}, {"redrive", "."}} {
		if r := tb.run("", args...); r.code == 0 || !strings.Contains(r.err.Error(), "not a broker name") {
			t.Errorf("%q: exit %d (%q, %v), want a refusal", args, r.code, r.out, r.err)
		}
	}
	r := tb.must("", "ls")
	if lines := strings.Split(strings.TrimSpace(r.out), "\n"); len(lines) != 3 || !strings.Contains(lines[1], "jobs ") || !strings.Contains(lines[2], "jobs.dlq") {
		t.Fatalf("after the hostile declares: %q", r.out)
	}
	if qi, _ := tb.b.Queue("jobs"); qi.Config.MaxDeliveries != 3 {
		t.Fatalf("jobs: %+v", qi.Config)
	}
}

// TestDeclareIfAbsentDifferentSettings: --if-absent over an existing
// queue, topic or stream with other settings keeps them (exit 0, as
// documented) and says on stderr which asked settings differ, with the
// values kept; settings equal to the existing ones (a default given
// explicitly included) say nothing. Before, it said "exists" and nothing
// else: a provisioning script asking max_deliveries=1 went on believing
// it had it.
func TestDeclareIfAbsentDifferentSettings(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "jobs", "max_deliveries=3", "visibility_timeout=10s")
	tb.must("", "declare", "stream", "log")
	r := tb.must("", "declare", "queue", "jobs", "--if-absent", "max_deliveries=1", "visibility_timeout=10s", "dead_letter=other")
	if !strings.HasPrefix(r.out, "exists queue jobs") ||
		!strings.Contains(r.errOut, `queue "jobs" exists with other settings than asked, kept (--if-absent): max_deliveries=3 (asked 1), dead_letter=jobs.dlq (asked other)`) {
		t.Fatalf("out %q err %q", r.out, r.errOut)
	}
	if r := tb.must("", "declare", "queue", "jobs", "--if-absent", "max_deliveries=3", "visibility_timeout=10s", "dead_letter=jobs.dlq"); r.errOut != "" {
		t.Fatalf("the same settings: err %q", r.errOut)
	}
	if r := tb.must("", "declare", "stream", "log", "--if-absent"); r.errOut != "" {
		t.Fatalf("stream without settings: err %q", r.errOut)
	}
	if qi, _ := tb.b.Queue("jobs"); qi.Config.MaxDeliveries != 3 || qi.Config.DeadLetter == "other" {
		t.Fatalf("jobs changed: %+v", qi.Config)
	}
}
