package up

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
	"github.com/switchyard/switchyard/httpx/listtest"
)

// TestRelayFollowsBrokerPages: /ops/v1/queues relays a real broker's
// listing with its query, If-None-Match, ETag and Link rel="next" (the
// link rewritten to /ops/v1/queues), so a client walks every page through
// the relay; the broker's 400 problems for hostile limits and cursors
// come through unchanged.
func TestRelayFollowsBrokerPages(t *testing.T) {
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	brokerSrv := httptest.NewServer(httpapi.New(b))
	t.Cleanup(func() { brokerSrv.Close(); b.Close() })
	for _, q := range []string{"rides", "payments", "notifications"} {
		if err := b.Declare(q, broker.QueueConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ops/v1/queues", relayGET(brokerSrv.Client(), func() string { return brokerSrv.URL + "/v1/queues" }))
	relay := httptest.NewServer(mux)
	t.Cleanup(relay.Close)
	want := b.Queues()
	listtest.Check(t, listtest.List{Base: relay.URL, Path: "/ops/v1/queues", Want: want,
		Names: func(t *testing.T, body []byte) []string {
			var v struct {
				Queues []string `json:"queues"`
			}
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			return v.Queues
		}})
}

// TestRelayLink: only a next link to the upstream's own path is relayed,
// moved to the relay's path with its query.
func TestRelayLink(t *testing.T) {
	for _, c := range []struct {
		links []string
		want  string
	}{
		{[]string{`</v1/queues?cursor=abc&limit=2>; rel="next"`}, "/ops/v1/queues?cursor=abc&limit=2"},
		{[]string{`</v1/topics?cursor=abc>; rel="next"`}, ""},
		{[]string{`<http://evil.example/v1/queues?cursor=abc>; rel="next"`}, ""},
		{[]string{`<//evil.example/v1/queues>; rel="next"`}, ""},
		{[]string{`</v1/queues?cursor=abc>; rel="prev"`}, ""},
		{[]string{`</v1/queues?cursor=a%20b>; rel="next"`}, "/ops/v1/queues?cursor=a+b"},
		{nil, ""},
		{[]string{`garbage`}, ""},
	} {
		if got := relayLink("/v1/queues", "/ops/v1/queues", c.links); got != c.want {
			t.Errorf("%q: %q, want %q", c.links, got, c.want)
		}
	}
}

// FuzzRelayLink: whatever Link header the broker (or something posing
// as it) sends, the relayed link is empty or a path-only URL on the
// relay's own path, with nothing that could end the <...> of the Link
// header it is written into or split a header.
func FuzzRelayLink(f *testing.F) {
	for _, s := range []string{
		`</v1/queues?cursor=abc&limit=2>; rel="next"`,
		`<http://evil.example/v1/queues?cursor=abc>; rel="next"`,
		`<//evil.example/v1/queues>; rel="next"`,
		`</v1/queues?cursor=a%20b>; rel="next"`,
		`</v1/queues?cursor=a b>; rel="next"`,
		`</v1/queues?x=">, <http://evil/>; rel="next"`,
		"</v1/queues?x=\r\nSet-Cookie: a=b>; rel=\"next\"",
		`garbage`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, link string) {
		got := relayLink("/v1/queues", "/ops/v1/queues", []string{link})
		if got == "" {
			return
		}
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || u.Path != "/ops/v1/queues" {
			t.Fatalf("%q relayed as %q: want a path-only URL on /ops/v1/queues", link, got)
		}
		if i := strings.IndexFunc(got, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(`<>"`, r) }); i >= 0 {
			t.Fatalf("%q relayed as %q: byte %q at %d would break the Link header", link, got, got[i], i)
		}
	})
}
