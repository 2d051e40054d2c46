package dns

import (
	"strings"
	"testing"
)

// TestConfigErrors: each mistake is reported at its file:line:col and key
// path, all at once.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "zones: []\nlisen: x\n", []string{`test.yaml:2:1: lisen`, `did you mean "listen"`}},
		{"empty", "", []string{"config is empty"}},
		{"no zones", "ttl: 10s\n", []string{"zones: missing"}},
		{"bad values", `
ttl: 0.5s
max_udp_size: 100
regions: {eu: [10.0.0.0/33]}
sites:
  - {name: a, addresses: [not-an-ip]}
  - {name: a, addresses: [192.0.2.1], weight: -1, host: nodot}
zones:
  - origin: example.test
  - origin: ex.test.
    soa: {}
    records: ["@ SOA a b 1 2 3 4 5", "sub NS ns1", "@ CNAME x", "www A 1.2.3", "www CNAME x"]
    pools:
      - {name: app, sites: [a, zz], policy: fastest, answers: 9, geo: {mars: [a]}}
`, []string{
			"test.yaml:2:1: ttl: 500ms: expected 1s to 24h",
			"test.yaml:3:1: max_udp_size: 100",
			`regions.eu[0]: parsing CIDR "10.0.0.0/33"`,
			`sites[0].addresses[0]: "not-an-ip"`,
			`sites[1].name: "a": duplicate`,
			"sites[1].weight: -1",
			`sites[1].host: "nodot"`,
			`zones[0].origin: "example.test": expected a fully qualified name`,
			"zones[1].soa.ns: missing",
			"zones[1].records[0]: \"@ SOA a b 1 2 3 4 5\": type SOA not served",
			"zones[1].records[1]: \"sub NS ns1\": NS records only at the zone origin",
			"zones[1].records[2]: \"@ CNAME x\": a CNAME cannot be at the zone origin",
			"zones[1].records[3]: parsing record",
			"zones[1].records: missing NS records",
			`zones[1].pools[0].sites[1]: "zz": no such site`,
			`zones[1].pools[0].policy: "fastest"`,
		}},
		{"pool over static", `
sites: [{name: a, addresses: [192.0.2.1]}]
zones:
  - origin: ex.test.
    soa: {ns: ns1.ex.test.}
    records: ["@ NS ns1", "app A 192.0.2.9"]
    pools: [{name: app, sites: [a], answers: 9, geo: {mars: [a]}}]
`, []string{"pools[0].name: \"app\": the name also has static A records", "pools[0].answers: 9: expected 1-8", `pools[0].geo.mars: "mars": no such region`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.yaml), "test.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestConfigDefaults: a minimal zone gets the documented defaults.
func TestConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte("zones: [{origin: ex.test., soa: {ns: ns1.ex.test.}, records: [\"@ NS ns1\"]}]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.withDefaults()
	if d.Listen != DefaultListen || d.TTL != DefaultTTL || d.MaxUDPSize != DefaultMaxUDPSize || d.Health.Interval != DefaultCheckInterval {
		t.Errorf("defaults: %+v", d)
	}
	tb, err := compile(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if z := tb.zones["ex.test."]; z.negTTL != 60 || z.soa.Mbox != "hostmaster.ex.test." || z.soa.Serial != 1 {
		t.Errorf("SOA defaults: %v, negative TTL %d", z.soa, z.negTTL)
	}
}
