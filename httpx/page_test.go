package httpx

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Paging through a list with the Link it answers visits every name once;
// the link keeps the other query parameters.
func TestPageWalk(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	var seen []string
	target := "/v1/queues?x=1&limit=2"
	for pages := 0; target != ""; pages++ {
		if pages > 5 {
			t.Fatal("no end")
		}
		r := httptest.NewRequest("GET", target, nil)
		p, err := ParsePage(r, "queue", 100, 100)
		if err != nil {
			t.Fatal(err)
		}
		page, next := PageOf(names, p)
		seen = append(seen, page...)
		w := httptest.NewRecorder()
		SetNextLink(w, r, "queue", next, p.Limit)
		target = NextLink(w.Header().Values("Link"))
		if target != "" && !strings.Contains(target, "x=1") {
			t.Fatalf("link %q lost x=1", target)
		}
	}
	if strings.Join(seen, "") != "abcde" {
		t.Fatalf("saw %v", seen)
	}
	// A name deleted between pages does not lose the ones after it.
	page, _ := PageOf([]string{"a", "c"}, Page{Limit: 5, After: "b"})
	if strings.Join(page, "") != "c" {
		t.Fatalf("after a deleted name: %v", page)
	}
}

func TestPageErrors(t *testing.T) {
	for q, want := range map[string]string{
		"limit=0":                              `limit "0": expected a whole number from 1 to 50`,
		"limit=51":                             `limit "51": expected a whole number from 1 to 50`,
		"limit=x":                              `limit "x"`,
		"limit=1&limit=2":                      "limit given more than once",
		"cursor=":                              "empty",
		"cursor=%25%25":                        "not base64url",
		"cursor=" + EncodeCursor("topic", "a"): "a cursor of another list: expected the cursor of a Link rel=\"next\" of this list (queue)",
		"cursor=" + b64("v2:queue:a"):          "not a cursor of this server",
		"cursor=" + b64("v1:queue:"):           "no position",
		"cursor=" + strings.Repeat("A", 2000):  "2000 bytes",
	} {
		_, err := ParsePage(httptest.NewRequest("GET", "/l?"+q, nil), "queue", 10, 50)
		var pe *PageError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", q, err, want)
		}
	}
	p, err := ParsePage(httptest.NewRequest("GET", "/l", nil), "queue", 10, 50)
	if err != nil || p.Limit != 10 || p.After != "" {
		t.Fatalf("defaults: %+v %v", p, err)
	}
}

func b64(s string) string { return encodeRaw(s) }

func encodeRaw(s string) string {
	// EncodeCursor("x", "y") is base64url of "v1:x:y"; build arbitrary ones.
	return strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(stdB64(s)), "=")
}

func TestConditional(t *testing.T) {
	tag := ETag([]byte("body"))
	for inm, want := range map[string]bool{tag: true, "W/" + tag: true, `"x", ` + tag: true, "*": true, `"x"`: false} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("If-None-Match", inm)
		w := httptest.NewRecorder()
		if got := NotModified(w, r, tag); got != want || w.Header().Get("ETag") != tag {
			t.Errorf("If-None-Match %s: %v", inm, got)
		} else if got && w.Code != http.StatusNotModified {
			t.Errorf("status %d", w.Code)
		}
	}
	r := httptest.NewRequest("PUT", "/", nil)
	if IfMatch(r, tag) != nil {
		t.Fatal("no If-Match must pass")
	}
	r.Header.Set("If-Match", "W/"+tag)
	if err := IfMatch(r, tag); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("a weak tag in If-Match: %v", err)
	}
	r.Header.Set("If-Match", tag)
	if IfMatch(r, tag) != nil {
		t.Fatal("matching If-Match")
	}
}

func TestNextLink(t *testing.T) {
	for v, want := range map[string]string{
		`</a?x=1,2>; rel="prev", </b>; rel="next"`: "/b",
		`</c>; rel="first next"`:                   "/c",
		`</d>; title="a, rel=next"; rel=prev`:      "",
		`garbage`:                                  "",
	} {
		if got := NextLink([]string{v}); got != want {
			t.Errorf("%s: %q, want %q", v, got, want)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(EncodeCursor("queue", "orders"))
	f.Add("")
	f.Add("djE6cXVldWU6")
	f.Fuzz(func(t *testing.T, c string) {
		after, err := DecodeCursor("queue", c)
		if err != nil {
			if strings.Contains(err.Error(), "\x00") {
				t.Fatal("error echoes a NUL")
			}
			return
		}
		if after == "" {
			t.Fatal("an accepted cursor without a position")
		}
		if back, err := DecodeCursor("queue", EncodeCursor("queue", after)); err != nil || back != after {
			t.Fatalf("round trip %q: %q %v", after, back, err)
		}
	})
}

func FuzzNextLink(f *testing.F) {
	f.Add(`</a>; rel="next"`)
	f.Add(`<,>;,"`)
	f.Fuzz(func(t *testing.T, v string) {
		_ = NextLink([]string{v})
	})
}

func stdB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestPageRangeAgreesWithPageOf: for every list size, limit and resume
// point (present, absent, before and after all), PageRange picks the same
// page and next name as PageOf.
func TestPageRangeAgreesWithPageOf(t *testing.T) {
	all := []string{"b", "d", "f", "h", "j", "l"}
	for n := 0; n <= len(all); n++ {
		names := all[:n]
		for limit := 1; limit <= n+1; limit++ {
			for _, after := range []string{"", "a", "b", "c", "d", "j", "l", "z"} {
				p := Page{Limit: limit, After: after}
				want, wantNext := PageOf(names, p)
				start, end, next := PageRange(len(names), func(i int) string { return names[i] }, p)
				if strings.Join(names[start:end], ",") != strings.Join(want, ",") || next != wantNext {
					t.Fatalf("n=%d %+v: PageRange %v next %q, PageOf %v next %q", n, p, names[start:end], next, want, wantNext)
				}
			}
		}
	}
}

// TestParsePageMalformedQuery: a query with a pair that does not decode
// is refused rather than read as no cursor or no limit.
func TestParsePageMalformedQuery(t *testing.T) {
	for _, q := range []string{"cursor=%%%", "limit=%zz", "x=%&limit=2", "cursor=%g0"} {
		r := httptest.NewRequest("GET", "/v1/queues?"+q, nil)
		_, err := ParsePage(r, "queue", 10, 10)
		var pe *PageError
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "query") {
			t.Errorf("%s: %v", q, err)
		}
	}
}
