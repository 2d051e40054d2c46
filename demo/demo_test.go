package demo

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/gateway"
)

func TestDemoConfigIsValid(t *testing.T) {
	text, err := Config(ConfigParams{Listen: "127.0.0.1:8080", Admin: "127.0.0.1:9901", AccessLog: "off",
		Backends: []string{"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "demo.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatalf("demo config rejected: %v\n%s", err, text)
	}
	if len(cfg.Upstreams["demo"].Targets) != 3 || cfg.Upstreams["weighted"].Targets[0].Weight != 5 {
		t.Fatalf("demo config renders wrong targets:\n%s", text)
	}
}

func TestBackendEndpoints(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := Start(ctx, "b1", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + b.Addr()
	get := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("GET", "/anything"); code != 200 || !strings.Contains(body, `"backend":"b1"`) {
		t.Fatalf("echo: %d %s", code, body)
	}
	if code, _ := get("GET", "/status/503"); code != 503 {
		t.Fatalf("status endpoint: %d", code)
	}
	if code, _ := get("GET", "/status/99"); code != 400 {
		t.Fatalf("bad status accepted: %d", code)
	}
	if code, _ := get("GET", "/slow?d=10ms"); code != 200 {
		t.Fatalf("slow: %d", code)
	}
	if code, body := get("GET", "/sse?n=2&every=1ms"); code != 200 || strings.Count(body, "data: ") != 2 {
		t.Fatalf("sse: %d %q", code, body)
	}
	if code, _ := get("POST", "/demo/health?ok=false"); code != 200 {
		t.Fatal("health toggle failed")
	}
	if code, _ := get("GET", "/healthz"); code != 503 {
		t.Fatalf("unhealthy backend answers healthz %d", code)
	}
	if code, _ := get("POST", "/demo/health?ok=maybe"); code != 400 {
		t.Fatal("bad health toggle accepted")
	}
	cancel()
}
