package gateway

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
)

// locBase is a valid config that each location case extends.
const locBase = "listen: 127.0.0.1:8080\nupstreams:\n  rides:\n    targets:\n      - { address: 127.0.0.1:9001 }\nroutes:\n  - upstream: rides\n"

// TestErrorsNameExactKeyAndPosition checks that every mistake is blamed on
// its own key, with that key's (or value's) line and column, whatever YAML
// shape it is written in: block, flow mapping, flow sequence, anchor and
// alias, merge key.
func TestErrorsNameExactKeyAndPosition(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want string // "line:col: path" prefix after the file name
		msg  string
	}{
		"block mapping value": {
			yaml: locBase + "server:\n  read_header_timeout: 10s\n  idle_timeout: 3 ms\n",
			want: "10:17: server.idle_timeout", msg: `invalid duration "3 ms"`,
		},
		"flow mapping second key": {
			yaml: strings.Replace(locBase, "    targets:", "    timeout: { connect: 1s, header: 300 ms }\n    targets:", 1),
			want: "4:37: upstreams.rides.timeout.header", msg: `invalid duration "300 ms"`,
		},
		"flow mapping first key": {
			yaml: strings.Replace(locBase, "    targets:", "    timeout: { connect: 1 s, header: 300ms }\n    targets:", 1),
			want: "4:25: upstreams.rides.timeout.connect", msg: `invalid duration "1 s"`,
		},
		"flow mapping on one line with a later block": {
			yaml: strings.Replace(locBase, "    targets:", "    timeout: { connect: 1s, header: 3x }\n    retry: { attempts: 2 }\n    targets:", 1),
			want: "4:37: upstreams.rides.timeout.header", msg: `invalid duration "3x"`,
		},
		"flow mapping unknown key": {
			yaml: strings.Replace(locBase, "    targets:", "    timeout: { connect: 1s, hedaer: 3s }\n    targets:", 1),
			want: "4:29: upstreams.rides.timeout.hedaer", msg: `did you mean "header"`,
		},
		"flow sequence element": {
			yaml: strings.Replace(locBase, "127.0.0.1:9001 }", "127.0.0.1:9001 }\n      - { address: 127.0.0.1:9002, weight: heavy }", 1),
			want: "6:44: upstreams.rides.targets[1].weight", msg: `"heavy"`,
		},
		"flow sequence of scalars": {
			yaml: strings.Replace(locBase, "    targets:", "    retry: { on: [timeout, 502, { x: 1 }] }\n    targets:", 1),
			want: "4:33: upstreams.rides.retry.on[2]", msg: "expected a string",
		},
		"alias to an anchored block": {
			yaml: "listen: 127.0.0.1:8080\nupstreams:\n  a:\n    timeout: &t { connect: 1s, header: 9 q }\n    targets: [{ address: 'h:1' }]\n  b:\n    timeout: *t\n    targets: [{ address: 'h:2' }]\nroutes: [{ upstream: a }]\n",
			want: "4:40: upstreams.a.timeout.header", msg: `invalid duration "9 q"`,
		},
		"alias used where another type is expected": {
			yaml: "listen: 127.0.0.1:8080\nupstreams:\n  a:\n    retry: &r { attempts: 2 }\n    timeout: *r\n    targets: [{ address: 'h:1' }]\nroutes: [{ upstream: a }]\n",
			want: "4:17: upstreams.a.timeout.attempts", msg: `unknown key "attempts"`,
		},
		"alias scalar": {
			yaml: "server: { max_body_buffer: &n lots }\n" + strings.Replace(locBase, "    targets:", "    max_idle_conns: *n\n    targets:", 1),
			want: "1:28: server.max_body_buffer", msg: `expected an integer, got "lots"`,
		},
		"merge key, error in merged mapping": {
			yaml: "listen: 127.0.0.1:8080\nbase: &base { connect: 1s, header: 5 x }\n",
			want: "2:1: base", msg: `unknown key "base"`,
		},
		"merge key into a block": {
			yaml: "listen: 127.0.0.1:8080\nupstreams:\n  a: &a\n    timeout: { connect: 1s }\n    targets: [{ address: 'h:1' }]\n  b:\n    <<: *a\n    timeout: { header: 2 y }\n    targets: [{ address: 'h:2' }]\nroutes: [{ upstream: a }]\n",
			want: "8:24: upstreams.b.timeout.header", msg: `invalid duration "2 y"`,
		},
		"merge key, unknown key inside the anchor": {
			yaml: "listen: 127.0.0.1:8080\ndefaults: &d\n  balanse: random\nupstreams:\n  a:\n    <<: *d\n    targets: [{ address: 'h:1' }]\nroutes: [{ upstream: a }]\n",
			want: "3:3: upstreams.a.balanse", msg: `did you mean "balance"`,
		},
		"merge key list": {
			yaml: "listen: 127.0.0.1:8080\nupstreams:\n  a:\n    timeout: &t1 { connect: 1s }\n    retry: &t2 { attempts: 2 }\n    targets: [{ address: 'h:1' }]\n  b:\n    timeout: { <<: [*t1, *t2] }\n    targets: [{ address: 'h:2' }]\nroutes: [{ upstream: a }]\n",
			want: "5:18: upstreams.b.timeout.attempts", msg: `unknown key "attempts"`,
		},
		"validation error names the key's own line": {
			yaml: "listen: 127.0.0.1:8080\nupstreams:\n  rides: { targets: [{ address: 127.0.0.1:9001 }, { address: 'nohost' }] }\nroutes:\n  - upstream: rides\n",
			want: "3:53: upstreams.rides.targets[1].address", msg: "expected host:port",
		},
		"validation error in a flow route": {
			yaml: "listen: 127.0.0.1:8080\nupstreams: { rides: { targets: [{ address: 'h:1' }] } }\nroutes: [{ upstream: rides }, { upstream: ridez }]\n",
			want: "3:33: routes[1].upstream", msg: `unknown upstream "ridez"`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), "loc.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			var found bool
			for _, e := range flatten(err) {
				if strings.HasPrefix(e.Error(), "loc.yaml:"+tc.want+":") && strings.Contains(e.Error(), tc.msg) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want an error starting loc.yaml:%s: and containing %q; got:\n%v", tc.want, tc.msg, err)
			}
		})
	}
}

// TestMergeKeysAccepted checks that valid merges and aliases load with
// YAML's semantics (explicit keys win over merged ones).
func TestMergeKeysAccepted(t *testing.T) {
	doc := "listen: 127.0.0.1:8080\nupstreams:\n  a: &a\n    balance: random\n    timeout: &t { connect: 1s, header: 2s }\n    targets: [{ address: 'h:1' }]\n  b:\n    <<: *a\n    balance: least_connections\n    targets: [{ address: 'h:2' }]\n  c:\n    timeout: *t\n    targets: [{ address: 'h:3' }]\nroutes: [{ upstream: a }]\n"
	cfg, err := ParseConfig([]byte(doc), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Upstreams["b"]; b.Policy != "least_connections" || b.Timeout.Connect != time.Duration(1e9) || b.Targets[0].Address != "h:2" {
		t.Fatalf("merge decoded wrong: %+v", b)
	}
	if c := cfg.Upstreams["c"]; c.Timeout.Header != time.Duration(2e9) {
		t.Fatalf("alias decoded wrong: %+v", c)
	}
}

func TestDidYouMean(t *testing.T) {
	_, err := ParseConfig([]byte(locBase+"acess_log: off\n"), "d.yaml")
	if err == nil || !strings.Contains(err.Error(), `did you mean "access_log"`) {
		t.Fatalf("err = %v", err)
	}
	_, err = ParseConfig([]byte(locBase+"zzzzzz: 1\n"), "d.yaml")
	if err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Fatalf("suggested something for a far-off key: %v", err)
	}
}

// TestAliasExpansionBounded checks that a document of nested aliases and
// merges (a "billion laughs") is refused quickly instead of expanded.
func TestAliasExpansionBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("listen: 127.0.0.1:8080\nupstreams:\n  a0: &a0 { targets: [{ address: 'h:1' }] }\n")
	for i := 1; i < 40; i++ {
		b.WriteString("  a" + itoa(i) + ": &a" + itoa(i) + " { <<: [*a" + itoa(i-1) + ", *a" + itoa(i-1) + "] }\n")
	}
	b.WriteString("routes: [{ upstream: a0 }]\n")
	_, _ = ParseConfig([]byte(b.String()), "laughs.yaml") // must return (quickly); accepted or not
}

func itoa(i int) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + string(rune('0'+i/10)) + string(rune('0'+i%10)))
}

// flatten returns the leaves of a joined error.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	var e *config.Error
	if errors.As(err, &e) {
		return []error{e}
	}
	return []error{err}
}
