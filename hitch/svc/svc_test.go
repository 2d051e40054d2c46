package svc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch/identity"
	"github.com/switchyard/switchyard/kit/discovery"
	"github.com/switchyard/switchyard/kit/discovery/registry"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

func startRegistry(t *testing.T) (*registry.Registry, string) {
	t.Helper()
	reg, err := registry.Open(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.Handler(reg))
	t.Cleanup(func() { srv.Close(); reg.Close() })
	return reg, srv.URL
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testSpecs is identity under name, with a cheap bcrypt cost.
func testSpecs(name string) []Spec {
	return []Spec{{Name: name, Replicated: true,
		New: Adapt(identity.New, func(c *identity.Config, d Deps) {
			c.Logger = d.Logger
			if c.BcryptCost == 0 {
				c.BcryptCost = 4
			}
		})}}
}

// serve runs Serve until the test's cancel; it returns the bound address
// and a func that stops it and returns Serve's error.
func serve(t *testing.T, specs []Spec, o Options) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	o.Ready = func(addr string) { ready <- addr }
	o.Logger, o.Stdout = quiet(), io.Discard
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, specs, o) }()
	stop := func() error { cancel(); return <-done }
	select {
	case addr := <-ready:
		t.Cleanup(func() { cancel() })
		return addr, stop
	case err := <-done:
		cancel()
		t.Fatalf("Serve: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("Serve not ready within 20s")
	}
	return "", nil
}

func TestServeRegistersAndStops(t *testing.T) {
	reg, regURL := startRegistry(t)
	data := t.TempDir()
	addr, stop := serve(t, testSpecs("identity"), Options{Name: "identity", Replica: 1, Data: data, Registry: regURL})
	snap := reg.Snapshot("identity")
	if len(snap.Instances) != 1 || snap.Instances[0].ID != "identity-1" || snap.Instances[0].Address != addr {
		t.Fatalf("registry has %+v, want identity-1 at %s", snap.Instances, addr)
	}
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("registered port 0: %s", addr)
	}
	resp, err := http.Post("http://"+addr+identity.PathRegister, "application/json",
		strings.NewReader(`{"role":"rider","name":"Ann","email":"ann@example.com","password":"password1"}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("register through the process: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if path == "/metrics" && !strings.Contains(string(body), `hitch_http_requests_total{code="201",method="post",service="identity"} 1`) {
			t.Fatalf("metrics lack the request count:\n%s", body)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "identity.db")); err != nil {
		t.Fatalf("the service's SQLite database: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve after ctx end: %v", err)
	}
	if n := len(reg.Snapshot("identity").Instances); n != 0 {
		t.Fatalf("%d instances left registered after the stop", n)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("still serving after the stop")
	}
}

// With a PostgreSQL store the service lives in its own schema.
func TestServePostgresSchema(t *testing.T) {
	base := storetest.PostgresURL()
	if base == "" {
		t.Skip("SWITCHYARD_TEST_POSTGRES=off")
	}
	var b [4]byte
	rand.Read(b[:])
	name := "svctest" + hex.EncodeToString(b[:])
	ctx := context.Background()
	admin, err := store.Open(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run after the function returns: drop, then close.
	t.Cleanup(func() {
		if _, err := admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+Schema(name)+" CASCADE"); err != nil {
			t.Errorf("dropping the test schema: %v", err)
		}
		admin.Close()
	})
	_, regURL := startRegistry(t)
	_, stop := serve(t, testSpecs(name), Options{Name: name, Store: base, Registry: regURL})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := admin.QueryRow(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = 'hitch_identity_users'`, Schema(name)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("users table in schema %s: %d %v", Schema(name), n, err)
	}
}

func TestOptionsValidate(t *testing.T) {
	specs := append(testSpecs("identity"), Spec{Name: "rides", Bus: true, New: testSpecs("x")[0].New}, Spec{Name: "views"})
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Name: "identiy", Data: "d", Registry: "http://r"}, `did you mean "identity"`},
		{Options{Name: "identity", Registry: "http://r"}, "--data DIR is required"},
		{Options{Name: "identity", Data: "d"}, "--registry URL is required"},
		{Options{Name: "identity", Data: "d", Registry: "r:1"}, "expected http://HOST:PORT"},
		{Options{Name: "rides", Data: "d", Registry: "http://r"}, "--bus URL is required"},
		{Options{Name: "identity", Data: "d", Registry: "http://r", Store: "mysql://x"}, "--store"},
		{Options{Name: "identity", Data: "d", Registry: "http://r", Listen: "nope"}, "--listen"},
		{Options{Name: "identity", Data: "d", Registry: "http://r", Replica: -1}, "--replica"},
		{Options{Name: "views", Data: "d", Registry: "http://r"}, "not built yet"},
	} {
		if err := tc.o.Validate(specs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}

// A bad service config file is refused at start, naming file:line and key.
func TestServeConfigFile(t *testing.T) {
	_, regURL := startRegistry(t)
	path := filepath.Join(t.TempDir(), "identity.yaml")
	os.WriteFile(path, []byte("token_ttl: 2h\nbcrypt_cots: 5\n"), 0o644)
	err := Serve(context.Background(), testSpecs("identity"), Options{Name: "identity", Data: t.TempDir(), Registry: regURL,
		ConfigFile: path, Logger: quiet(), Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "identity.yaml:2") || !strings.Contains(err.Error(), "bcrypt_cost") {
		t.Fatalf("bad config: %v", err)
	}
}

// The resolver sends http://NAME/... to NAME's registered instances.
func TestResolver(t *testing.T) {
	reg, regURL := startRegistry(t)
	hits := map[string]int{}
	for _, id := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, id+r.URL.Path) }))
		t.Cleanup(srv.Close)
		if _, err := reg.Register(discovery.Registration{Service: "echo", ID: id, Address: srv.Listener.Addr().String()}); err != nil {
			t.Fatal(err)
		}
	}
	dc, err := discovery.NewClient(regURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := NewResolver(dc, nil)
	defer r.Close()
	client := &http.Client{Transport: r}
	for i := 0; i < 4; i++ {
		resp, err := client.Get("http://echo/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		hits[string(b)]++
	}
	if hits["a/x"] != 2 || hits["b/x"] != 2 {
		t.Fatalf("hits %v: want round robin over a and b", hits)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://nobody/x", nil)
	if _, err := client.Do(req); err == nil {
		t.Fatal("a service without instances answered")
	}
	req, _ = http.NewRequest("GET", "http://Bad_Name/x", nil)
	if _, err := client.Do(req); err == nil {
		t.Fatal("an invalid service name resolved")
	}
}

// The table: unique names, identity runnable, routes well formed.
func TestServicesTable(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Services() {
		if seen[s.Name] || discovery.ValidName(s.Name) != nil {
			t.Errorf("service name %q duplicate or invalid", s.Name)
		}
		seen[s.Name] = true
		for _, r := range s.Routes {
			if n := btoi(r.Path != "") + btoi(r.PathPrefix != "") + btoi(r.PathPattern != ""); n != 1 || r.Name == "" {
				t.Errorf("%s route %+v: want a name and exactly one path condition", s.Name, r)
			}
			switch r.Role {
			case Public, AnyRole, Rider, Driver:
			default:
				t.Errorf("%s route %s: role %q", s.Name, r.Name, r.Role)
			}
		}
	}
	if s, err := Lookup(Services(), "identity"); err != nil || s.New == nil {
		t.Fatalf("identity: %v", err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
