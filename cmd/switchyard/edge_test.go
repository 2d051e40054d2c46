package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	// push: a file, or stdin, published with its headers and a TTL.
	obj := filepath.Join(t.TempDir(), "launch.html")
	if err := os.WriteFile(obj, []byte("<h1>Launch</h1>"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := cli("push", "--admin", admin, "--url", front+"/press/launch.html", "--file", obj, "--ttl", "10m",
		"-H", "Content-Type: text/html", "-H", "Surrogate-Key: press"); code != 0 || !strings.Contains(out, `"bytes": 15`) {
		t.Fatalf("push: %d %s %s", code, out, errOut)
	}
	resp, err := http.Get(front + "/press/launch.html")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "<h1>Launch</h1>" || resp.Header.Get("Cache-Status") != "switchyard; hit" || resp.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("pushed object: %q %q %q", b, resp.Header.Get("Cache-Status"), resp.Header.Get("Content-Type"))
	}
	edgeStdin = strings.NewReader("from stdin")
	t.Cleanup(func() { edgeStdin = os.Stdin })
	if code, out, errOut := cli("push", "--admin", admin, "--url", front+"/press/x.txt", "--file", "-", "--ttl", "1m", "--status", "404"); code != 0 || !strings.Contains(out, `"bytes": 10`) {
		t.Fatalf("push from stdin: %d %s %s", code, out, errOut)
	}
	if code, out, _ := cli("purge", "--admin", admin, "--tag", "press"); code != 0 || !strings.Contains(out, `"purged": 1`) {
		t.Fatalf("purge the pushed tag: %d %s", code, out)
	}
	if code, _, errOut := cli("push", "--admin", admin, "--url", front+"/p", "--file", obj); code != 1 || !strings.Contains(errOut, "not storable") {
		t.Fatalf("push without freshness: %d %s", code, errOut)
	}
	if code, _, errOut := cli("push", "--admin", admin, "--url", front+"/p"); code != 2 || !strings.Contains(errOut, "--url and --file are required") {
		t.Fatalf("push without --file: %d %s", code, errOut)
	}
	if code, _, errOut := cli("push", "--admin", admin, "--url", front+"/p", "--file", obj, "-H", "Bad Header"); code != 2 || !strings.Contains(errOut, "expected 'Name: value'") {
		t.Fatalf("push with a bad header: %d %s", code, errOut)
	}
	if code, _, errOut := cli("frobnicate"); code != 2 || !strings.Contains(errOut, "expected purge, push, stats or inspect") {
		t.Fatalf("bad verb: %d %s", code, errOut)
	}
	// The command may follow the flags, and --admin may be a URL.
	if code, out, errOut := cli("--admin", "http://"+admin+"/", "stats"); code != 0 || !strings.Contains(out, `"entries"`) {
		t.Fatalf("flags before the command, --admin as a URL: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := cli("--admin", admin); code != 2 || !strings.Contains(errOut, "missing command: expected purge, push, stats or inspect") {
		t.Fatalf("no verb: %d %s", code, errOut)
	}
	if code, _, errOut := cli("stats", "--admin", admin, "extra"); code != 2 || !strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Fatalf("extra argument: %d %s", code, errOut)
	}
}
