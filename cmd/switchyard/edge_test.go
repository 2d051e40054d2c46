package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestEdgeCLI purges and inspects a real gateway's cache through
// `switchyard edge`.
func TestEdgeCLI(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Surrogate-Key", "news")
		fmt.Fprint(w, r.URL.Path)
	}))
	defer origin.Close()
	// The admin API wants a token; the CLI takes it from the environment.
	t.Setenv("SY_EDGE_TEST_TOKEN", "edge-cli-operator-token")
	t.Setenv(adminTokenEnv, "edge-cli-operator-token")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nadmin_auth: {tokens: [{name: ops, token: env:SY_EDGE_TEST_TOKEN, role: operator}]}\naccess_log: off\ncaches:\n  edge: { memory: 1MiB }\nupstreams:\n  u: { targets: [{address: %s}] }\nroutes:\n  - { upstream: u, cache: edge }\n", origin.Listener.Addr())
	g := runTestGateway(t, cfg)
	front := "http://" + g.Addr().String()
	for _, p := range []string{"/a", "/b"} {
		resp, err := http.Get(front + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	admin := g.AdminAddr().String()
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"edge"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, _ := cli("stats", "--admin", admin); code != 0 || !strings.Contains(out, `"entries": 2`) {
		t.Fatalf("stats: %d %s", code, out)
	}
	t.Setenv(adminTokenEnv, "")
	if code, _, errOut := cli("stats", "--admin", admin); code != 1 || !strings.Contains(errOut, "needs a credential") {
		t.Fatalf("stats without a token: %d %s", code, errOut)
	}
	t.Setenv(adminTokenEnv, "edge-cli-operator-token")
	if code, out, _ := cli("inspect", "--admin", admin, "--url", front+"/a"); code != 0 || !strings.Contains(out, `"status": 200`) {
		t.Fatalf("inspect: %d %s", code, out)
	}
	if code, out, _ := cli("purge", "--admin", admin, "--url", front+"/a"); code != 0 || !strings.Contains(out, `"purged": 1`) {
		t.Fatalf("purge url: %d %s", code, out)
	}
	if code, out, _ := cli("purge", "--admin", admin, "--tag", "news", "--soft"); code != 0 || !strings.Contains(out, `"purged": 1`) || !strings.Contains(out, `"soft": true`) {
		t.Fatalf("purge tag: %d %s", code, out)
	}
	if code, _, errOut := cli("purge", "--admin", admin, "--cache", "nope", "--tag", "x"); code != 1 || !strings.Contains(errOut, `unknown cache "nope"`) {
		t.Fatalf("unknown cache: %d %s", code, errOut)
	}
	if code, _, errOut := cli("purge", "--admin", admin); code != 2 || !strings.Contains(errOut, "exactly one") {
		t.Fatalf("no target: %d %s", code, errOut)
	}
	if code, _, errOut := cli("frobnicate"); code != 2 || !strings.Contains(errOut, "expected purge, stats or inspect") {
		t.Fatalf("bad verb: %d %s", code, errOut)
	}
	// The command may follow the flags, and --admin may be a URL.
	if code, out, errOut := cli("--admin", "http://"+admin+"/", "stats"); code != 0 || !strings.Contains(out, `"entries"`) {
		t.Fatalf("flags before the command, --admin as a URL: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := cli("--admin", admin); code != 2 || !strings.Contains(errOut, "missing command: expected purge, stats or inspect") {
		t.Fatalf("no verb: %d %s", code, errOut)
	}
	if code, _, errOut := cli("stats", "--admin", admin, "extra"); code != 2 || !strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Fatalf("extra argument: %d %s", code, errOut)
	}
}
