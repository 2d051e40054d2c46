package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/slo"
)

const sloRulesConfig = `listen: 127.0.0.1:0
upstreams:
  app:
    targets: [{ address: 127.0.0.1:9 }]
routes:
  - { name: api, upstream: app }
slos:
  - name: api-availability
    route: api
    objective: 99.9%
  - name: app-latency
    upstream: app
    kind: latency
    threshold: 250ms
    objective: 99%
    window: 7d
    alerts:
      - { name: fast, burn_rate: 10, long_window: 1h30m, short_window: 5m }
`

// promtool returns the path of Prometheus' promtool, or skips the test.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; .ci/run installs it): cannot check the rules")
	}
	return p
}

// TestSLORulesPromtool writes the rules with the real command, has
// promtool check them, and runs promtool's rule unit tests on them: with
// 9% errors from minute 60 the fast-burn alert fires, and five minutes
// after the errors stop it no longer does.
func TestSLORulesPromtool(t *testing.T) {
	tool := promtool(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(cfg, []byte(sloRulesConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"slo", "rules", "--config", cfg, "--out", rules}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out, err := exec.Command(tool, "check", "rules", rules).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS: 17 rules found") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}

	// promtool compares annotations too: take them from the rules.
	var rf slo.RuleFile
	data, _ := os.ReadFile(rules)
	if err := yaml.Unmarshal(data, &rf); err != nil {
		t.Fatal(err)
	}
	var ann map[string]string
	for _, r := range rf.Groups[0].Rules {
		if r.Alert == "SwitchyardSLOFastBurn" {
			ann = r.Annotations
		}
	}
	if ann == nil {
		t.Fatalf("no SwitchyardSLOFastBurn alert in\n%s", data)
	}
	annYAML, _ := yaml.Marshal(ann)
	indent := strings.ReplaceAll(strings.TrimSpace(string(annYAML)), "\n", "\n              ")
	test := fmt.Sprintf(`rule_files: [%s]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'switchyard_requests_total{route="api",upstream="app",code="200"}'
        values: '0+100x180'
      - series: 'switchyard_requests_total{route="api",upstream="app",code="500"}'
        values: '0x60 10+10x59 600x60'
    alert_rule_test:
      - eval_time: 50m
        alertname: SwitchyardSLOFastBurn
        exp_alerts: []
      - eval_time: 110m
        alertname: SwitchyardSLOFastBurn
        exp_alerts:
          - exp_labels: {severity: page, slo: api-availability, slo_alert: fast-burn}
            exp_annotations:
              %s
      - eval_time: 135m
        alertname: SwitchyardSLOFastBurn
        exp_alerts: []
`, rules, indent)
	testFile := filepath.Join(dir, "rules_test.yaml")
	if err := os.WriteFile(testFile, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(tool, "test", "rules", testFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s\n%s", err, out, test)
	}
}

func TestSLORulesErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noSLOs := write("none.yaml", strings.Split(sloRulesConfig, "slos:")[0])
	offBucket := write("off.yaml", strings.Replace(sloRulesConfig, "threshold: 250ms", "threshold: 300ms", 1))
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"slo"}, 2, "missing command: expected rules"},
		{[]string{"slo", "rule", "--config", noSLOs}, 2, `unknown command "rule": did you mean "rules"?`},
		{[]string{"slo", "rules"}, 2, "--config FILE is required"},
		{[]string{"slo", "rules", "--config", filepath.Join(dir, "missing.yaml")}, 1, "no such file"},
		{[]string{"slo", "rules", "--config", noSLOs}, 1, "no slos in the config"},
		{[]string{"slo", "rules", "--config", offBucket}, 1, "off.yaml:14:5: slos[1].threshold: 300ms is not a bucket bound of switchyard_request_duration_seconds"},
	}
	for _, args := range [][]string{{"slo", "--help"}, {"slo", "rules", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "Usage: switchyard slo rules") || stderr.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q lacks %q", tc.args, code, tc.code, stderr.String(), tc.want)
		}
	}
}
