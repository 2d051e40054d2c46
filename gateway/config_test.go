package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadFullExample(t *testing.T) {
	cfg, err := LoadConfig("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	u := cfg.Upstreams["rides"]
	if u == nil || len(u.Targets) != 2 || u.Targets[0].Weight != 3 || u.HashOn != "header:X-User-ID" {
		t.Fatalf("upstream decoded wrong: %+v", u)
	}
	if u.Retry.Attempts != 3 || time.Duration(u.Retry.Base) != 25*time.Millisecond || u.Retry.Budget != 0.2 ||
		strings.Join(u.Retry.On, ",") != "connect_failure,timeout,502,503,504" {
		t.Fatalf("retry decoded wrong: %+v", u.Retry)
	}
	if u.Outlier.MaxEjected != 0.5 || time.Duration(u.Timeout.Connect) != time.Second {
		t.Fatalf("outlier/timeout decoded wrong: %+v %+v", u.Outlier, u.Timeout)
	}
	if sv := cfg.Server; time.Duration(sv.ReadBodyTimeout) != 30*time.Second || time.Duration(sv.WriteTimeout) != 45*time.Second || sv.MaxHeaderBytes != 8192 {
		t.Fatalf("server decoded wrong: %+v", sv)
	}
	r := cfg.Routes[0]
	if r.Name != "route0" || r.Match.Headers["X-Client"] != "mobile" || r.StripPrefix != "/v1" {
		t.Fatalf("route decoded wrong: %+v", r)
	}
}

func TestErrorsNameFileKeyPathAndExpectation(t *testing.T) {
	base := "listen: 127.0.0.1:8080\nupstreams:\n  rides:\n    targets:\n      - { address: 127.0.0.1:9001 }\nroutes:\n  - upstream: rides\n"
	for name, tc := range map[string]struct {
		yaml string
		want []string
	}{
		"unknown top key":            {base + "listn: x\n", []string{"bad.yaml:8", "listn", `unknown key "listn"`, "expected one of"}},
		"unknown nested":             {strings.Replace(base, "targets:", "balanse: x\n    targets:", 1), []string{"upstreams.rides.balanse", "bad.yaml:4"}},
		"bad duration":               {base + "server: { idle_timeout: 10x }\n", []string{"server.idle_timeout", `invalid duration "10x"`}},
		"negative duration":          {base + "server: { idle_timeout: -1s }\n", []string{"server.idle_timeout", "negative"}},
		"negative write timeout":     {base + "server: { write_timeout: -5s }\n", []string{"bad.yaml:8", "server.write_timeout", "negative"}},
		"huge write timeout":         {base + "server:\n  write_timeout: 1000h\n", []string{"bad.yaml:9", "server.write_timeout", "out of range", "1ms to 24h0m0s"}},
		"tiny body timeout":          {base + "server:\n  read_body_timeout: 1ns\n", []string{"bad.yaml:9", "server.read_body_timeout", "out of range"}},
		"huge idle timeout":          {base + "server:\n  idle_timeout: 9999h\n", []string{"bad.yaml:9", "server.idle_timeout", "out of range"}},
		"bad write timeout":          {base + "server: { write_timeout: soon }\n", []string{"server.write_timeout", `invalid duration "soon"`}},
		"negative header bytes":      {base + "server:\n  max_header_bytes: -1\n", []string{"bad.yaml:9", "server.max_header_bytes", "-1 out of range", "1024 to 1048576"}},
		"small header bytes":         {base + "server:\n  max_header_bytes: 100\n", []string{"bad.yaml:9", "server.max_header_bytes", "out of range"}},
		"huge header bytes":          {base + "server:\n  max_header_bytes: 99999999999\n", []string{"bad.yaml:9", "server.max_header_bytes", "out of range"}},
		"header bytes not int":       {base + "server:\n  max_header_bytes: 16k\n", []string{"bad.yaml:9", "max_header_bytes", "16k"}},
		"negative body buffer total": {base + "server: { max_body_buffer_total: -1 }\n", []string{"server.max_body_buffer_total", "negative size -1"}},
		"bad percent":                {strings.Replace(base, "targets:", "outlier: { max_ejected: 150% }\n    targets:", 1), []string{"upstreams.rides.outlier.max_ejected", "percentage"}},
		"wrong type":                 {strings.Replace(base, "127.0.0.1:9001 }", "127.0.0.1:9001, weight: heavy }", 1), []string{"upstreams.rides.targets[0]", "weight", "heavy"}},
		"missing upstream":           {strings.Replace(base, "upstream: rides", "upstream: ridez", 1), []string{"routes[0].upstream", `unknown upstream "ridez"`, "expected one of rides"}},
		"no upstreams at all":        {"listen: 127.0.0.1:8080\nroutes:\n  - upstream: rides\n", []string{"routes[0].upstream", `unknown upstream "rides": no upstreams are defined (add one under upstreams:)`}},
		"duplicate target":           {strings.Replace(base, "      - { address: 127.0.0.1:9001 }", "      - { address: 127.0.0.1:9001 }\n      - { address: 127.0.0.1:9001 }", 1), []string{"targets[1].address", "duplicate target"}},
		"duplicate upstream": {"listen: 127.0.0.1:1\nupstreams:\n  a: {targets: [{address: 'h:1'}]}\n  a: {targets: [{address: 'h:2'}]}\nroutes: [{upstream: a}]\n",
			[]string{"upstreams.a", "duplicate"}},
		"duplicate route":   {base + "  - { name: route0, upstream: rides }\n", []string{"routes[1].name", "duplicate route name"}},
		"bad address":       {strings.Replace(base, "127.0.0.1:9001", "nohost", 1), []string{"targets[0].address", "expected host:port"}},
		"no listen":         {strings.Replace(base, "listen: 127.0.0.1:8080\n", "", 1), []string{"listen", "missing"}},
		"no targets":        {"listen: 127.0.0.1:1\nupstreams:\n  a: {}\nroutes: [{upstream: a}]\n", []string{"upstreams.a.targets", "at least one target"}},
		"bad method":        {strings.Replace(base, "upstream: rides", "upstream: rides\n    match: { methods: [get] }", 1), []string{"routes[0].match.methods[0]", "upper-case"}},
		"path prefix slash": {strings.Replace(base, "upstream: rides", "upstream: rides\n    match: { path_prefix: v1 }", 1), []string{"routes[0].match.path_prefix", "must start with /"}},
		"not a mapping":     {"- a\n- b\n", []string{"top level"}},
		"empty":             {"", []string{"empty"}},
		"syntax":            {"listen: [1\n", []string{"bad.yaml:", "invalid YAML"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), "bad.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	_, err := ParseConfig([]byte("listen: nope\nupstreams:\n  a: {targets: [{address: x}]}\nroutes: [{upstream: b}]\n"), "c.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"listen", "upstreams.a.targets[0].address", "routes[0].upstream"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("joined error lacks %q: %v", w, err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "none.yaml"))
	if err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestWrapLocatesComponentErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.yaml")
	_ = os.WriteFile(path, []byte("listen: 127.0.0.1:1\nupstreams:\n  a:\n    balance: nope\n    targets: [{address: 'h:1'}]\nroutes: [{upstream: a}]\n"), 0o644)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Wrap("upstreams.a.balance", os.ErrInvalid)
	if want := path + ":4:5: upstreams.a.balance: invalid argument"; e.Error() != want {
		t.Fatalf("got %q, want %q", e, want)
	}
}

// FuzzParse checks that no input crashes the loader and that every
// rejection is a located error.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/full.yaml"); err == nil {
		f.Add(string(b))
	}
	f.Add("listen: 127.0.0.1:1\nupstreams:\n  a: {targets: [{address: 'h:1'}]}\nroutes: [{upstream: a}]\n")
	f.Add("listen: &a x\nadmin: *a\n")
	f.Add("upstreams: {a: {retry: {budget: 20%, base: 1s}}}")
	f.Add("listen: 127.0.0.1:1\nupstreams:\n  a: {targets: [{address: 'h:1'}]}\nroutes: [{aggregate: {calls: [{name: x, upstream: a, path: /}]}}]\n")
	f.Add("listen: 127.0.0.1:1\nbroker: {url: 'http://127.0.0.1:7401'}\nroutes: [{publish: {queue: q}}]\n")
	f.Add("listen: 127.0.0.1:1\na: &a [x, x]\nb: &b [*a, *a]\nroutes: [{upstream: u, match: {methods: *b}}]\n")
	f.Add("listen: 127.0.0.1:1\nupstreams:\n  a: &a {targets: [{address: 'h:1'}], timeout: {connect: 1s}}\n  b: {<<: *a, balance: random}\nroutes: [{upstream: b}]\n")
	f.Add("listen: 127.0.0.1:1\nx: &x {a: &y {<<: *x}}\n")
	f.Add("listen: 127.0.0.1:1\nupstreams: {a: {<<: [*a], targets: [{address: 'h:1', weight: 0}]}}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := ParseConfig([]byte(doc), "fuzz.yaml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		if cfg.Listen == "" || len(cfg.Routes) == 0 {
			t.Fatalf("accepted a config without listen or routes")
		}
		for _, r := range cfg.Routes {
			if r.Aggregate != nil || r.Publish != nil {
				continue // answered by composition or the broker, not an upstream
			}
			if _, ok := cfg.Upstreams[r.Upstream]; !ok {
				t.Fatalf("accepted a route to unknown upstream %q", r.Upstream)
			}
		}
	})
}

// TestRefusesConfigsThatCannotStart covers mistakes that only showed when
// the gateway tried to listen or balance: ports out of range, two
// listeners on one address, weights outside 1..1000000.
func TestRefusesConfigsThatCannotStart(t *testing.T) {
	base := "listen: 127.0.0.1:8080\nupstreams:\n  rides:\n    targets:\n      - { address: 127.0.0.1:9001 }\nroutes:\n  - upstream: rides\n"
	for name, tc := range map[string]struct {
		yaml string
		want []string
	}{
		"listen port out of range": {strings.Replace(base, "127.0.0.1:8080", "127.0.0.1:99999", 1), []string{"c.yaml:1:1: listen", `port "99999"`, "0 to 65535"}},
		"admin port out of range":  {base + "admin: 127.0.0.1:70000\n", []string{"c.yaml:8:1: admin", "0 to 65535"}},
		"target port out of range": {strings.Replace(base, "127.0.0.1:9001", "127.0.0.1:65536", 1), []string{"targets[0].address", "1 to 65535"}},
		"target port zero":         {strings.Replace(base, "127.0.0.1:9001", "127.0.0.1:0", 1), []string{"targets[0].address", "1 to 65535"}},
		"broker port out of range": {base + "broker: { url: 'http://127.0.0.1:74010' }\n", []string{"c.yaml:8:11: broker.url", "1 to 65535"}},
		"listen equals admin":      {base + "admin: 127.0.0.1:8080\n", []string{"c.yaml:8:1: admin", "same address as listen"}},
		"admin on wildcard":        {base + "admin: :8080\n", []string{"c.yaml:8:1: admin", "same address as listen"}},
		"weight zero":              {strings.Replace(base, "127.0.0.1:9001 }", "127.0.0.1:9001, weight: 0 }", 1), []string{"targets[0].weight", "weight 0", "1 to 1000000", "drain"}},
		"weight too big":           {strings.Replace(base, "127.0.0.1:9001 }", "127.0.0.1:9001, weight: 1000001 }", 1), []string{"targets[0].weight", "1 to 1000000"}},
		"weight beyond int32":      {strings.Replace(base, "127.0.0.1:9001 }", "127.0.0.1:9001, weight: 4294967297 }", 1), []string{"targets[0].weight", "1 to 1000000"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), "c.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// Port 0 (any free port) stays valid for listeners, and distinct ports
	// on one host are fine.
	if _, err := ParseConfig([]byte(strings.Replace(base, "127.0.0.1:8080", "127.0.0.1:0", 1)+"admin: 127.0.0.1:0\n"), "c.yaml"); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseConfig([]byte(base+"admin: 127.0.0.1:9901\n"), "c.yaml"); err != nil {
		t.Fatal(err)
	}
}
