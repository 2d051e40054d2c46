package sidecar

import (
	"os"
	"strings"
	"testing"
)

func TestConfigErrorsAreLocated(t *testing.T) {
	doc := `service: rides
app: 127.0.0.1:9000
listen: 0.0.0.0:15000
ttl: 10ms
app_health: {path: healthz}
dependencies:
  payments:
    retry: {on: [teapot]}
  Search: {}
`
	_, err := ParseConfig([]byte(doc), "sc.yaml")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"sc.yaml:3:1: listen: \"0.0.0.0:15000\" has a wildcard host",
		"sc.yaml:4:1: ttl: 10ms out of range",
		"sc.yaml:5:14: app_health.path: \"healthz\"",
		"sc.yaml:8:18: dependencies.payments.retry.on[0]: retry condition \"teapot\"",
		"sc.yaml:9:3: dependencies.Search: dependency name",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

func TestConfigRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown key":     "service: a\napp: 127.0.0.1:1\nlisten_addr: x\n",
		"missing":         "listen: 127.0.0.1:1\n",
		"bad app":         "service: a\napp: nohost\n",
		"port 0 app":      "service: a\napp: 127.0.0.1:0\n",
		"clash":           "service: a\napp: 127.0.0.1:1\nlisten: 127.0.0.1:7\noutbound: 127.0.0.1:7\n",
		"admin clash":     "service: a\napp: 127.0.0.1:1\nadmin: 0.0.0.0:15000\n",
		"registry":        "service: a\napp: 127.0.0.1:1\nregistry: ftp://x\n",
		"wild advertise":  "service: a\napp: 127.0.0.1:1\nadvertise: 0.0.0.0:9\n",
		"bad id":          "service: a\napp: 127.0.0.1:1\nid: \"a b\"\n",
		"bad tag":         "service: a\napp: 127.0.0.1:1\ntags: [\"a b\"]\n",
		"tls half":        "service: a\napp: 127.0.0.1:1\ntls: {cert: x}\n",
		"negative":        "service: a\napp: 127.0.0.1:1\ninbound: {max_in_flight: -1}\n",
		"dep bad balance": "service: a\napp: 127.0.0.1:1\ndependencies: {b: {balance: fastest}}\n",
		"dep bad service": "service: a\napp: 127.0.0.1:1\ndependencies: {b: {service: \"B!\"}}\n",
		"type":            "service: [a]\napp: 127.0.0.1:1\n",
		"not a mapping":   "- a\n",
		"huge ttl":        "service: a\napp: 127.0.0.1:1\nttl: 9999h\n",
		"alias bomb":      "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n",
		"slo route":       "service: a\napp: 127.0.0.1:1\nslos: [{name: x, route: api, objective: 99%}]\n",
		"slo upstream":    "service: a\napp: 127.0.0.1:1\nslos: [{name: x, upstream: app, objective: 99%}]\n",
		"slo objective":   "service: a\napp: 127.0.0.1:1\nslos: [{name: x, objective: 120%}]\n",
		"slo duplicate":   "service: a\napp: 127.0.0.1:1\nslos: [{name: x, objective: 99%}, {name: x, objective: 99%}]\n",
		"slo latency":     "service: a\napp: 127.0.0.1:1\nslos: [{name: x, kind: latency, objective: 99%}]\n",
	} {
		if _, err := ParseConfig([]byte(doc), "t.yaml"); err == nil {
			t.Errorf("%s: accepted:\n%s", name, doc)
		} else if !strings.Contains(err.Error(), "t.yaml") {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
}

func TestConfigDefaultsAndGateways(t *testing.T) {
	c, err := ParseConfig([]byte("service: rides\napp: 127.0.0.1:9000\ndependencies: {payments: , search: {service: finder}}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.Outbound != DefaultOutbound || c.Admin != DefaultAdmin || c.Registry != DefaultRegistry {
		t.Fatalf("defaults: %+v", c)
	}
	in := c.inboundGateway()
	if in.Upstreams["app"].Targets[0].Address != "127.0.0.1:9000" || len(in.Routes) != 1 {
		t.Fatalf("inbound: %+v", in)
	}
	out := c.outboundGateway()
	if len(out.Routes) != 2 || out.Routes[0].Match.PathPrefix != "/payments" || out.Routes[0].StripPrefix != "/payments" {
		t.Fatalf("outbound routes: %+v", out.Routes)
	}
	p := out.Upstreams["payments"]
	if p.Discover != "payments" || p.Retry.Attempts != DefaultRetryAttempts || p.CircuitBreaker == nil {
		t.Fatalf("payments upstream: %+v", p)
	}
	if out.Upstreams["search"].Discover != "finder" {
		t.Fatalf("search discovers %q", out.Upstreams["search"].Discover)
	}
	c2, err := ParseConfig([]byte("service: rides\napp: 127.0.0.1:9000\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c2.outboundGateway() != nil {
		t.Fatal("an outbound gateway without dependencies")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("service: rides\napp: 127.0.0.1:9000\ndependencies: {payments: {retry: {attempts: 2}}}\n"))
	f.Add([]byte("service: a\napp: 127.0.0.1:1\nlisten: 0.0.0.0:1\nadvertise: 10.0.0.1:1\ntags: [v1]\nmeta: {zone: a}\n"))
	f.Add([]byte("app_health: {path: /h, interval: 1s, expect_status: [200, 204]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, "fuzz.yaml")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		// A valid config builds valid gateway configs.
		if c.inboundGateway() == nil || (len(c.Dependencies) > 0) != (c.outboundGateway() != nil) {
			t.Fatal("gateway configs do not match the dependencies")
		}
	})
}

// TestDocsEveryKeyParses: the reference block of docs/sidecar.md is a
// valid config, so the page cannot drift from the schema.
func TestDocsEveryKeyParses(t *testing.T) {
	data, err := os.ReadFile("../docs/sidecar.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "### Every key\n\n```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/sidecar.md has no \"### Every key\" yaml block")
	}
	if _, err := ParseConfig([]byte(block), "docs/sidecar.md"); err != nil {
		t.Fatal(err)
	}
}
