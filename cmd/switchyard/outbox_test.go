package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
)

func TestOutboxCommand(t *testing.T) {
	ctx := context.Background()
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "svc.db")
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := outbox.Prepare(ctx, db); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{4, 9} {
		if _, err := db.Exec(ctx, `INSERT INTO sy_outbox_parked (id, msg_id, dest, msg_key, khash, seq, body, headers, deliver_ms, ttl_ms, created_ms, error, parked_ms)
			VALUES (?, ?, 'small', 'k', 1, 1, ?, '', 0, 0, 1, 'message too large: 342 bytes', 2)`, id, "m"+string(rune('0'+id)), make([]byte, 300)); err != nil {
			t.Fatal(err)
		}
	}
	sy := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"outbox"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, _ := sy("parked", "--db", dsn); code != 0 || !strings.Contains(out, "m4") || !strings.Contains(out, "300") || !strings.Contains(out, "too large") {
		t.Fatalf("parked: %d\n%s", code, out)
	}
	if code, out, errb := sy("redrive", "--db", dsn, "4", "77"); code == 0 || !strings.Contains(out, "redrove 1") || !strings.Contains(errb, "1 of the 2 row ids given are not parked") {
		t.Fatalf("redrive 4 77: %d %q %q", code, out, errb)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_outbox WHERE msg_id = 'm4'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("m4 back in sy_outbox: %d, %v", n, err)
	}
	if code, out, _ := sy("discard", "--db", dsn); code != 0 || !strings.Contains(out, "discarded 1") {
		t.Fatalf("discard: %d %q", code, out)
	}
	if code, out, _ := sy("parked", "--db", dsn); code != 0 || !strings.Contains(out, "no parked messages") {
		t.Fatalf("parked after: %d %q", code, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "missing action"},
		{[]string{"list"}, `unknown action "list"`},
		{[]string{"parked"}, "--db URL is required"},
		{[]string{"redrive", "--db", dsn, "x"}, `invalid row id "x"`},
		{[]string{"parked", "--db", dsn, "--limit", "-1"}, "invalid --limit -1"},
	} {
		if code, _, errb := sy(c.args...); code == 0 || !strings.Contains(errb, c.want) {
			t.Errorf("outbox %v: %d %q, want %q", c.args, code, errb, c.want)
		}
	}
}
