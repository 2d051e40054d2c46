// Package layers holds the test that keeps the package structure honest:
// every package sits on a floor (docs/architecture.md draws them) and may
// import only packages on lower floors, plus a few pairs that are
// forbidden outright because they were the mistakes of the past.
package layers

import (
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/switchyard/switchyard/"

// floors maps a package (relative to the module; "x/..." covers x's
// subpackages not listed on their own) to its floor. Imports must point
// to a strictly lower floor. Keep in step with docs/architecture.md.
var floors = map[string]int{
	// 0: leaves — the standard library's neighbours.
	"internal/...": 0, "broker/internal/...": 0, "httpx": 0, "config": 0, "upstream": 0, "route": 0,
	// 1: primitives shared by every traffic path, the log, the broker's face.
	"balance": 1, "health": 1, "breaker": 1, "retry": 1, "ratelimit": 1,
	"wal": 1, "broker": 1, "internal/flaghint": 1, "kit/store": 1, "kit/flow": 1, "telemetry": 1,
	// the shared checker of paged list endpoints (tests only).
	"httpx/listtest": 1,
	// SLOs: counting, burn-rate alerts, webhooks, Prometheus rules (config only).
	"slo": 1,
	// 2: middleware (speak httpx, never the proxy), the broker's engine and
	// wire format, the load generator.
	"auth": 2, "cors": 2, "ipfilter": 2, "transform": 2, "compose": 2, "edge": 2, "load": 2,
	"broker/engine": 2, "broker/wire": 2, "broker/access": 2, "kit/store/storetest": 2, "kit/shard": 2, "l4": 2,
	"kit/resilient": 2, "dns": 2, "chaos": 2, "contract": 2, "rollout": 2,
	// HTTP/JSON to gRPC transcoding (middleware) and its test service.
	"transcode": 2, "transcode/transcodetest": 2,
	// the live dashboard: reads sources (funcs or an admin handler), never the gateway.
	"dashboard": 2,
	// transport security: listener certificates, upstream TLS, client
	// certificate identity (middleware).
	"tlsconf":     2,
	"kit/message": 2, "kit/message/messagetest": 3,
	"kit/cache": 2,
	"kit/saga":  2,
	// service discovery's face and client (instances, watch, balancing).
	"kit/discovery": 2,
	// 3: the request path, the broker's servers and client.
	"throttle": 3, "httpserver": 3, "httpserver/h2": 3, "proxy": 3, "load/chart": 3,
	"broker/httpapi": 3, "broker/native": 3, "broker/client": 3,
	// the service registry (state, SQLite file, HTTP API).
	"kit/discovery/registry": 3,
	// 4: what builds on a client or the proxy.
	"admin": 4, "publish": 4, "broker/local": 4, "broker/client/logstore": 4, "broker/cli": 4,
	"kit/message/sybroker": 4, "kit/message/jetstream": 4,
	"kit/outbox": 4, "kit/inbox": 4,
	// chaos experiments: load, load/chart, and the components' APIs over HTTP.
	"chaos/experiment": 4,

	"kit/eventstore": 2,
	// 3: the request path, the broker's servers and client.
	"kit/projection": 3,
	// 4: what builds on a client or the proxy.
	"kit/projection/brokersource": 4,
	// 5: assembly: a config file to a running component.
	"gateway": 5, "broker/server": 5,
	// 6: assembles gateways (the sidecar and its ambassador).
	"sidecar": 6,
	// Hitch, the example system: its shared event contract and geometry low,
	// each service (one package per service) on the kit, the process runtime,
	// supervisor, simulator and benchmark above them.
	"hitch/web": 0, "hitch/geo": 1, "hitch": 2,
	"hitch/identity": 5, "hitch/location": 5, "hitch/matching": 5, "hitch/rides": 5,
	"hitch/payments": 5, "hitch/cardprocessor": 5, "hitch/notifications": 5, "hitch/views": 5,
	"hitch/svc": 6, "hitch/up": 7, "hitch/sim": 6, "hitch/hitchtest": 6, "hitch/web/webtest": 6,
	// 6, 7: programs.
	"demo": 6, "bench/...": 6, "cmd/...": 8,
	// 8: the Kubernetes manifests; their test drives hitch/up and the gateway.
	"deploy/kubernetes": 8,
}

// forbidden are imports that must never come back, whatever the floors say.
var forbidden = map[string][]string{
	// Clients and services use the broker's face, never its engine or log.
	"broker/client": {"broker/engine", "wal"},
	"broker/cli":    {"broker/engine", "wal"},
	"publish":       {"broker/engine", "wal"},
	"gateway":       {"broker/engine", "wal"},
	// Middleware speaks httpx, never the proxy or the server.
	"auth":      {"proxy", "httpserver"},
	"cors":      {"proxy", "httpserver"},
	"ipfilter":  {"proxy", "httpserver"},
	"transform": {"proxy", "httpserver"},
	"compose":   {"proxy", "httpserver"},
	"edge":      {"proxy", "httpserver"},
	"throttle":  {"proxy", "httpserver"},
}

func floorOf(pkg string) (int, bool) {
	if f, ok := floors[pkg]; ok {
		return f, true
	}
	for p := pkg; ; {
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return 0, false
		}
		p = p[:i]
		if f, ok := floors[p+"/..."]; ok {
			return f, true
		}
	}
}

func TestImportsPointDown(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "docs") {
			return filepath.SkipDir
		}
		if _, err := build.ImportDir(path, 0); err == nil {
			rel, _ := filepath.Rel(root, path)
			pkgs = append(pkgs, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(pkgs)
	if len(pkgs) < 20 {
		t.Fatalf("found only %d packages under %s", len(pkgs), root)
	}
	for _, pkg := range pkgs {
		if pkg == "." {
			continue
		}
		floor, ok := floorOf(pkg)
		if !ok {
			t.Errorf("%s: no floor: add it to floors here and to docs/architecture.md", pkg)
			continue
		}
		bp, err := build.ImportDir(filepath.Join(root, pkg), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range bp.Imports {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			for _, bad := range forbidden[pkg] {
				if dep == bad || strings.HasPrefix(dep, bad+"/") {
					t.Errorf("%s imports %s: forbidden", pkg, dep)
				}
			}
			df, ok := floorOf(dep)
			if ok && df >= floor {
				t.Errorf("%s (floor %d) imports %s (floor %d): imports must point down", pkg, floor, dep, df)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal("module root not found")
	}
}
