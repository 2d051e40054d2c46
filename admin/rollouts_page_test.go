package admin

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/httpx/listtest"
	"github.com/switchyard/switchyard/rollout"
)

// rolloutFake is a backend whose Rollouts come in no particular order
// (one upstream twice, as a backend caught mid-change might list it).
type rolloutFake struct {
	fake
	list []rollout.Status
}

func (f *rolloutFake) Rollouts() []rollout.Status { return f.list }
func (f *rolloutFake) Rollout(string) (rollout.Status, error) {
	return rollout.Status{}, ErrNotFound
}
func (f *rolloutFake) StartRollout(rollout.Spec) (rollout.Status, error) {
	return rollout.Status{}, ErrNotFound
}
func (f *rolloutFake) RolloutAction(string, string) (rollout.Status, error) {
	return rollout.Status{}, ErrNotFound
}

// TestRolloutsListPages: GET /admin/rollouts lists one rollout per
// upstream by name, in cursor pages with Link rel="next" and an ETag,
// and refuses hostile limits and cursors with a 400 problem.
func TestRolloutsListPages(t *testing.T) {
	b := &rolloutFake{list: []rollout.Status{
		{Upstream: "web"}, {Upstream: "api"}, {Upstream: "search"}, {Upstream: "api"}, {Upstream: "billing"},
	}}
	srv := httptest.NewServer(Handler(b, prometheus.NewRegistry()))
	t.Cleanup(srv.Close)
	l := listtest.List{Base: srv.URL, Path: "/admin/rollouts", Want: []string{"api", "billing", "search", "web"},
		Names: func(t *testing.T, body []byte) []string {
			var v struct {
				Rollouts []rollout.Status `json:"rollouts"`
			}
			if err := json.Unmarshal(body, &v); err != nil || v.Rollouts == nil {
				t.Fatalf("%s: %v", body, err)
			}
			var out []string
			for _, s := range v.Rollouts {
				out = append(out, s.Upstream)
			}
			return out
		}}
	listtest.Check(t, l)
	resp, body := l.Get(t, "/admin/rollouts?cursor=bm9wZQ", nil)
	var p map[string]any
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/problem+json" ||
		json.Unmarshal(body, &p) != nil || p["code"] != "bad_request" || p["status"] != float64(400) {
		t.Fatalf("bad cursor: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// Without rollouts: an empty list, still an array.
	srv2 := httptest.NewServer(Handler(&fake{}, prometheus.NewRegistry()))
	t.Cleanup(srv2.Close)
	resp, body = listtest.List{}.Get(t, srv2.URL+"/admin/rollouts", nil)
	if resp.StatusCode != 200 || string(body) != "{\n  \"rollouts\": []\n}\n" || resp.Header.Get("Link") != "" {
		t.Fatalf("no rollouts: %d %q", resp.StatusCode, body)
	}
}
