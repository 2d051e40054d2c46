package edge

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseDirectives(t *testing.T) {
	base := ParseDirectives(nil)
	with := func(f func(*Directives)) Directives {
		d := base
		f(&d)
		return d
	}
	cases := []struct {
		in   []string
		want Directives
	}{
		{[]string{"max-age=60"}, with(func(d *Directives) { d.MaxAge = 60 })},
		{[]string{"MAX-AGE=60, Public"}, with(func(d *Directives) { d.MaxAge = 60; d.Public = true })},
		{[]string{`max-age="60"`}, with(func(d *Directives) { d.MaxAge = 60 })},
		{[]string{"max-age=60", "s-maxage=10"}, with(func(d *Directives) { d.MaxAge = 60; d.SMaxAge = 10 })},
		{[]string{"max-age=99999999999999999999"}, with(func(d *Directives) { d.MaxAge = maxDelta })},
		{[]string{"max-age=-1"}, with(func(d *Directives) { d.Invalid = true })},
		{[]string{"max-age"}, with(func(d *Directives) { d.Invalid = true })},
		{[]string{"max-age=1x"}, with(func(d *Directives) { d.Invalid = true })},
		{[]string{"max-age=5, max-age=10"}, with(func(d *Directives) { d.MaxAge = 5; d.Invalid = true })},
		{[]string{"max-age=5, max-age=5"}, with(func(d *Directives) { d.MaxAge = 5 })},
		{[]string{"no-store,no-cache , private"}, with(func(d *Directives) { d.NoStore = true; d.NoCache = true; d.Private = true })},
		{[]string{`private="Set-Cookie, X-User"`}, with(func(d *Directives) { d.PrivateFields = []string{"Set-Cookie", "X-User"} })},
		{[]string{`no-cache="Set-Cookie"`}, with(func(d *Directives) { d.NoCache = true })},
		{[]string{"max-stale"}, with(func(d *Directives) { d.MaxStaleAny = true })},
		{[]string{"max-stale=30, min-fresh=5, only-if-cached"}, with(func(d *Directives) { d.MaxStale = 30; d.MinFresh = 5; d.OnlyIfCached = true })},
		{[]string{"stale-while-revalidate=30, stale-if-error=600"}, with(func(d *Directives) { d.StaleWhileRevalidate = 30; d.StaleIfError = 600 })},
		{[]string{"must-revalidate, proxy-revalidate, immutable, no-transform, must-understand"}, with(func(d *Directives) {
			d.MustRevalidate, d.ProxyRevalidate, d.Immutable, d.NoTransform, d.MustUnderstand = true, true, true, true, true
		})},
		{[]string{`foo="a,b\"c", max-age=7`}, with(func(d *Directives) { d.MaxAge = 7 })},
		{[]string{`foo="unterminated, max-age=7`}, base},
		{[]string{"max-age=3 garbage, public"}, with(func(d *Directives) { d.MaxAge = 3; d.Public = true })},
		{[]string{",,, ,", ""}, base},
		{[]string{strings.Repeat("x", 100) + "=1, no-store"}, with(func(d *Directives) { d.NoStore = true })},
	}
	for _, tc := range cases {
		if got := ParseDirectives(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseDirectives(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60, public", `private="a,b"`, `x="\"`, "max-stale", "s-maxage=99999999999999999999999", "max-age=\"1\",,=", "\"\"\"=,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := ParseDirectives([]string{s})
		for _, v := range []int64{d.MaxAge, d.SMaxAge, d.MaxStale, d.MinFresh, d.StaleWhileRevalidate, d.StaleIfError} {
			if v < -1 || v > maxDelta {
				t.Fatalf("%q: delta %d out of range", s, v)
			}
		}
		if len(d.PrivateFields) > maxFields {
			t.Fatalf("%q: %d private fields", s, len(d.PrivateFields))
		}
		// Parsing is deterministic and splitting the value across
		// field lines at a comma means the same.
		if d2 := ParseDirectives([]string{s}); !reflect.DeepEqual(d, d2) {
			t.Fatalf("%q: not deterministic", s)
		}
	})
}
