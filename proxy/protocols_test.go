package proxy

import (
	"net/http"
	"testing"
	"time"
)

func TestGRPCTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"1S": time.Second, "100m": 100 * time.Millisecond, "5u": 5 * time.Microsecond, "7n": 7,
		"2M": 2 * time.Minute, "1H": time.Hour, "99999999H": 1<<63 - 1, "00000001S": time.Second,
	} {
		if got, ok := parseGRPCTimeout(in); !ok || got != want {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "S", "1", "1s", "-1S", "+1S", "1 S", "123456789S", "1.5S", "0x1S", "１S"} {
		if _, ok := parseGRPCTimeout(bad); ok {
			t.Errorf("parseGRPCTimeout(%q) accepted", bad)
		}
	}
	h := http.Header{"Grpc-Timeout": {"10S"}}
	if got := boundGRPCTimeout(h, 2*time.Second); got != 1900*time.Millisecond || h.Get("Grpc-Timeout") != "1900000000n" && h.Get("Grpc-Timeout") != "1900000u" {
		t.Errorf("bounded to the route: %v, header %q", got, h.Get("Grpc-Timeout"))
	}
	h = http.Header{"Grpc-Timeout": {"300m"}}
	if got := boundGRPCTimeout(h, 2*time.Second); got != 300*time.Millisecond || h.Get("Grpc-Timeout") != "300m" {
		t.Errorf("client's shorter deadline kept: %v, header %q", got, h.Get("Grpc-Timeout"))
	}
	h = http.Header{"Grpc-Timeout": {"garbage"}}
	if boundGRPCTimeout(h, time.Second); h.Get("Grpc-Timeout") == "garbage" {
		t.Error("a malformed grpc-timeout went upstream")
	}
}

// FuzzGRPCTimeout: the parser never panics, and what the gateway writes
// parses back to at least the duration it stands for (never an earlier
// deadline) and within one unit step of it.
func FuzzGRPCTimeout(f *testing.F) {
	for _, s := range []string{"1S", "100m", "99999999H", "0n", "-1S", "1"} {
		f.Add(s, int64(time.Second))
	}
	f.Fuzz(func(t *testing.T, s string, n int64) {
		_, _ = parseGRPCTimeout(s)
		d := time.Duration(n)
		if d <= 0 {
			return
		}
		v := formatGRPCTimeout(d)
		got, ok := parseGRPCTimeout(v)
		if !ok {
			t.Fatalf("formatGRPCTimeout(%v) = %q does not parse", d, v)
		}
		if got < d && got != 1<<63-1 {
			t.Fatalf("formatGRPCTimeout(%v) = %q = %v: earlier than asked", d, v, got)
		}
	})
}
