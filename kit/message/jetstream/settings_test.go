package jetstream

import (
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

func TestEncName(t *testing.T) {
	seen := map[string]string{}
	for _, n := range []string{"a", "a.b", "a_b", "a_d", "a__b", "a._", "a_.", "x-y"} {
		e := encName(n)
		if strings.ContainsAny(e, ".*> ") {
			t.Errorf("encName(%q) = %q: not a stream name", n, e)
		}
		if prev, ok := seen[e]; ok {
			t.Errorf("encName(%q) = encName(%q) = %q", n, prev, e)
		}
		seen[e] = n
	}
}

func TestSettingsRoundTrip(t *testing.T) {
	s := settingsFor("rides", message.DeclareOptions{Visibility: time.Minute, MaxDeliveries: 7, DeadLetter: "rides.poison"})
	got, err := parseSettings("rides", s.String())
	if err != nil || got != s {
		t.Fatalf("round trip: %+v %v, want %+v", got, err, s)
	}
	if d := settingsFor("rides.dlq", message.DeclareOptions{}); d.deadLetter != broker.NoDeadLetter {
		t.Fatalf("a .dlq queue has dead letter %q", d.deadLetter)
	}
	for _, bad := range []string{"", "made by hand", "switchyard-queue visibility=-1s", "switchyard-queue max_deliveries=x",
		"switchyard-queue dead_letter=.x", "switchyard-queue colour=red", "switchyard-queue visibility=999999h"} {
		got, err := parseSettings("q", bad)
		if err == nil {
			t.Errorf("parseSettings(%q): no error", bad)
		}
		if got.visibility <= 0 || got.maxDeliveries <= 0 || got.deadLetter == "" {
			t.Errorf("parseSettings(%q) = %+v: defaults lost", bad, got)
		}
	}
}

func FuzzParseSettings(f *testing.F) {
	f.Add(settingsFor("q", message.DeclareOptions{}).String())
	f.Add("switchyard-queue visibility=1s max_deliveries=2 dead_letter=none")
	f.Add("switchyard-queue =x")
	f.Fuzz(func(t *testing.T, desc string) {
		s, _ := parseSettings("q", desc)
		if s.visibility <= 0 || s.visibility > broker.MaxVisibilityTimeout || s.maxDeliveries <= 0 ||
			(s.deadLetter != broker.NoDeadLetter && !broker.ValidName(s.deadLetter)) {
			t.Fatalf("parseSettings(%q) = %+v: unusable settings", desc, s)
		}
	})
}
