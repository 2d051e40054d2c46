package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// TestDemoPortInUseSaysWhichAndWhatToDo: a busy port (gateway, admin or a
// backend) is named with its flag and a way out, and the demo exits 1.
func TestDemoPortInUseSaysWhichAndWhatToDo(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--listen", addr, "--admin", "127.0.0.1:0", "--backends", "127.0.0.1:0"}, "--listen"},
		{[]string{"--listen", "127.0.0.1:0", "--admin", addr, "--backends", "127.0.0.1:0"}, "--admin"},
		{[]string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--backends", "127.0.0.1:0," + addr}, "--backends"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"demo", "--access-log", "off"}, tc.args...), &out, &errb)
		msg := errb.String()
		if code != 1 {
			t.Errorf("%v: exit %d, want 1 (stderr %q)", tc.args, code, msg)
		}
		for _, w := range []string{"port " + port, tc.flag, "already in use", "port 0"} {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: stderr %q lacks %q", tc.args, msg, w)
			}
		}
	}
}
