package balance

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, one per expected error; none means valid
	}{
		{"zero value", Config{}, nil},
		{"every policy", Config{Policy: CookiePolicy, HashOn: "query:u", Cookie: CookieConfig{Name: "sid", TTL: time.Hour}, VirtualNodes: 200, LoadFactor: 1.5, Fallback: LeastConnectionsPolicy}, nil},
		{"hash_on forms", Config{HashOn: "header:X-Tenant-Id"}, nil},
		{"unknown policy", Config{Policy: "fastest"},
			[]string{`unknown balance policy "fastest": expected one of round_robin, weighted_round_robin, least_connections, least_response_time, random, ip_hash, consistent_hash, cookie`}},
		{"hash_on without colon", Config{HashOn: "ip"}, []string{`invalid hash_on "ip": expected client_ip, path, header:NAME, cookie:NAME or query:NAME`}},
		{"hash_on unknown source", Config{HashOn: "body:x"}, []string{`invalid hash_on "body:x": unknown key source "body"`}},
		{"hash_on empty header", Config{HashOn: "header:"}, []string{`invalid hash_on "header:": expected a header name`}},
		{"hash_on bad header", Config{HashOn: "header:X User"}, []string{`invalid hash_on "header:X User"`}},
		{"hash_on empty cookie", Config{HashOn: "cookie:"}, []string{`expected a cookie name`}},
		{"hash_on empty query", Config{HashOn: "query:"}, []string{`expected a query parameter name`}},
		{"bad cookie name", Config{Cookie: CookieConfig{Name: "a b"}}, []string{`invalid cookie name "a b"`}},
		{"negative ttl", Config{Cookie: CookieConfig{TTL: -time.Second}}, []string{`negative cookie ttl -1s`}},
		{"virtual nodes", Config{VirtualNodes: -1}, []string{`virtual nodes -1 out of range: expected 1 to 10000`}},
		{"too many virtual nodes", Config{VirtualNodes: 20000}, []string{`virtual nodes 20000 out of range`}},
		{"load factor 1", Config{LoadFactor: 1}, []string{`load factor 1 out of range: expected a finite number greater than 1`}},
		{"load factor nan", Config{LoadFactor: math.NaN()}, []string{`load factor NaN`}},
		{"load factor inf", Config{LoadFactor: math.Inf(1)}, []string{`load factor +Inf`}},
		{"hash fallback", Config{Fallback: IPHashPolicy}, []string{`unknown fallback policy "ip_hash": expected one of round_robin,`}},
		{"all at once", Config{Policy: "x", HashOn: "y", Cookie: CookieConfig{Name: ";", TTL: -1}, VirtualNodes: -1, LoadFactor: 0.5, Fallback: "z"},
			[]string{"policy", "hash_on", "cookie name", "cookie ttl", "virtual nodes", "load factor", "fallback"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.cfg
			err := tt.cfg.Validate()
			if before.Policy != tt.cfg.Policy || before.HashOn != tt.cfg.HashOn {
				t.Fatal("Validate modified the config")
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %d errors", len(tt.want))
			}
			var errs []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			} else {
				errs = []error{err}
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("Validate() reported %d problems, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, w := range tt.want {
				msg := errs[i].Error()
				if !strings.Contains(msg, w) {
					t.Errorf("error %d = %q, want it to contain %q", i, msg, w)
				}
				if msg != "" && strings.ToLower(msg[:1]) != msg[:1] {
					t.Errorf("error %d = %q: want lowercase", i, msg)
				}
			}
		})
	}
}

func TestNewWrapsValidationErrors(t *testing.T) {
	_, err := New(Config{Policy: "fastest", LoadFactor: 0.9}, newTargets(1))
	if err == nil {
		t.Fatal("New accepted an invalid config")
	}
	if !strings.HasPrefix(err.Error(), "configuring balance policy: ") {
		t.Errorf("error %q: want it to start with the failing step", err)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Errorf("error %q: want both problems reachable with errors.As", err)
	}
}
