package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/config"
)

type block struct {
	Window  time.Duration  `yaml:"window"`
	Share   config.Percent `yaml:"share"`
	Range   [2]int         `yaml:"range"`
	Names   []string       `yaml:"names"`
	Enabled bool           `yaml:"enabled"`
}

func (b block) Validate() error {
	var errs []error
	if b.Range[0] > b.Range[1] {
		errs = append(errs, config.Fieldf("range", "%d-%d: expected low to high", b.Range[0], b.Range[1]))
	}
	if len(b.Names) > 0 && b.Names[0] == "" {
		errs = append(errs, config.Fieldf("names[0]", "empty name"))
	}
	return errors.Join(errs...)
}

type doc struct {
	Block  *block            `yaml:"block"`
	Blocks map[string]*block `yaml:"blocks"`
	Inline block             `yaml:",inline"`
}

func decode(t *testing.T, src string) (*doc, *config.Source, error) {
	t.Helper()
	var d doc
	s, err := config.DecodeYAML([]byte(src), "t.yaml", &d)
	return &d, s, err
}

func TestDecodeYAMLNamesEveryProblemAtItsKey(t *testing.T) {
	for name, c := range map[string]struct{ src, want string }{
		"unknown key with suggestion": {"block: { windwo: 1s }\n", `t.yaml:1:10: block.windwo: unknown key "windwo": did you mean "window"?`},
		"unit missing":                {"block:\n  window: 10\n", `t.yaml:2:11: block.window: invalid duration "10": expected a duration such as "250ms" or "10s" (did you mean "10s"? a duration needs a unit)`},
		"space in duration":           {"window: 300 ms\n", `t.yaml:1:9: window: invalid duration "300 ms": expected a duration such as "250ms" or "10s" (did you mean "300ms"?)`},
		"negative duration":           {"blocks: { a: { window: -1s } }\n", `t.yaml:1:24: blocks.a.window: negative duration "-1s"`},
		"bad percent":                 {"share: 150%\n", `t.yaml:1:8: share: invalid percentage "150%"`},
		"fixed-size list":             {"range: [1, 2, 3]\n", `t.yaml:1:8: range: expected a list of 2 values, got a list`},
		"wrong type in list":          {"names: [a, [b]]\n", `t.yaml:1:12: names[1]: expected a string, got a list`},
		"bool":                        {"enabled: maybe\n", `t.yaml:1:10: enabled: expected true or false, got "maybe"`},
		"through an alias":            {"block: &b { window: x }\nblocks: { a: *b }\n", `t.yaml:1:21: block.window: invalid duration "x"`},
		"empty":                       {"# nothing\n", `t.yaml: the document is empty`},
		"null document":               {"~\n", `t.yaml:1:1: the document is empty (null)`},
		"not a mapping":               {"- a\n", `t.yaml:1:1: expected a YAML mapping at the top level with keys block, blocks, enabled, names, range, share, window, got a list`},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := decode(t, c.src)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %s", err, c.want)
			}
		})
	}
}

// level is a setting read from its text form only (as wal.SyncPolicy).
type level struct{ n int }

func (l level) MarshalText() ([]byte, error) { return []byte([]string{"low", "high"}[l.n]), nil }

func (l *level) UnmarshalText(b []byte) error {
	switch string(b) {
	case "low":
		l.n = 0
	case "high":
		l.n = 1
	default:
		return fmt.Errorf("level %q: want low or high", b)
	}
	return nil
}

type settings struct {
	Timeout config.Duration              `yaml:"timeout"`
	Level   level                        `yaml:"level"`
	Size    int                          `yaml:"size"`
	Named   map[string]map[string]string `yaml:"named"`
	List    []string                     `yaml:"list"`
}

func TestDecodeYAMLTextValues(t *testing.T) {
	for name, c := range map[string]struct{ src, want string }{
		"duration without unit": {"timeout: 30\n", `t.yaml:1:10: timeout: invalid duration "30": expected a duration such as "250ms" or "10s" (did you mean "30s"? a duration needs a unit)`},
		"duration as a list":    {"timeout: [1s]\n", `t.yaml:1:10: timeout: expected a duration such as "250ms" or "10s", got a list`},
		"text setting":          {"level: medium\n", `t.yaml:1:8: level: level "medium": want low or high`},
		"text setting as map":   {"level: {n: 1}\n", `t.yaml:1:8: level: expected a single value such as "low", got a mapping`},
		"one value for a list":  {"list: a\n", `t.yaml:1:7: list: expected a list, got "a" (did you mean [a]?)`},
		"key that is a list":    {"named:\n  [a]: {}\n", `t.yaml:2:3: named: expected a name as the key, got a list`},
	} {
		t.Run(name, func(t *testing.T) {
			var s settings
			_, err := config.DecodeYAML([]byte(c.src), "t.yaml", &s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %s", err, c.want)
			}
		})
	}
	var s settings
	if _, err := config.DecodeYAML([]byte("timeout: -1m30s\nlevel: high\n"), "t.yaml", &s); err != nil || s.Timeout.Std() != -90*time.Second || s.Level.n != 1 {
		t.Fatalf("got %+v, %v", s, err) // a negative Duration is its owner's to judge
	}
}

// TestDecodeYAMLDecodesTheRest: with bad values, the good ones are still
// decoded and the Source returned, so that validation can report its own
// problems beside them.
func TestDecodeYAMLDecodesTheRest(t *testing.T) {
	const src = `timeout: soon
level: high
size: {a: 1}
named:
  x: {a: b}
  [y]: {}
  x: {c: d}
  z: {e: [f]}
list: [a, [b], c]
nope: 1
<<: 5
`
	var s settings
	source, err := config.DecodeYAML([]byte(src), "t.yaml", &s)
	if err == nil || source == nil {
		t.Fatalf("source %v, err %v", source, err)
	}
	for _, want := range []string{
		`t.yaml:1:10: timeout: invalid duration "soon"`,
		`t.yaml:3:7: size: expected an integer, got a mapping`,
		`t.yaml:6:3: named: expected a name as the key, got a list`,
		`t.yaml:7:3: named.x: duplicate key "x"`,
		`t.yaml:8:10: named.z.e: expected a string, got a list`,
		`t.yaml:9:11: list[1]: expected a string, got a list`,
		`t.yaml:10:1: nope: unknown key "nope"`,
		`t.yaml:11:5: merge key <<: expected a mapping or a list of mappings, got "5"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if s.Timeout != 0 || s.Level.n != 1 || s.Size != 0 || s.Named["x"]["a"] != "b" || len(s.Named) != 2 || s.Named["z"]["e"] != "" ||
		strings.Join(s.List, ",") != "a,c" {
		t.Errorf("decoded %+v", s)
	}
	if e := source.Errorf("named.x", "x").Error(); !strings.HasPrefix(e, "t.yaml:5:3: ") {
		t.Errorf("Source: %s", e)
	}
	// A document that cannot be read has no Source.
	if source, err := config.DecodeYAML([]byte("a: [\n"), "t.yaml", &s); source != nil || err == nil {
		t.Errorf("invalid YAML: source %v, err %v", source, err)
	}
}

func TestSourceWrapKeepsTheCause(t *testing.T) {
	_, src, err := decode(t, "blocks:\n  a: {}\n")
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("not found")
	err = src.Wrap("blocks.a", fmt.Errorf("declaring: %w", cause))
	if !errors.Is(err, cause) || err.Error() != "t.yaml:2:3: blocks.a: declaring: not found" {
		t.Errorf("got %v", err)
	}
}

func TestSourceLocatesBlockErrors(t *testing.T) {
	d, src, err := decode(t, "blocks:\n  a:\n    range: [5, 1]\n    names: ['', b]\n")
	if err != nil {
		t.Fatal(err)
	}
	got := src.Wrap("blocks.a", d.Blocks["a"].Validate()).Error()
	for _, want := range []string{"t.yaml:3:5: blocks.a.range: 5-1: expected low to high", "t.yaml:4:13: blocks.a.names[0]: empty name"} {
		if !strings.Contains(got, want) {
			t.Errorf("got %q\nwant it to contain %q", got, want)
		}
	}
	// A key that was not written is located at its closest written parent.
	if e := src.Errorf("blocks.a.window", "x").Error(); !strings.HasPrefix(e, "t.yaml:2:3: blocks.a.window: x") {
		t.Errorf("default key located as %q", e)
	}
	if !src.Written("blocks.a.range") || src.Written("blocks.a.window") {
		t.Error("Written is wrong")
	}
	var ce *config.Error
	if !errors.As(src.Errorf("blocks", "y"), &ce) || ce.Line != 1 || ce.Column != 1 {
		t.Errorf("Errorf: %#v", ce)
	}
}

func TestDurationText(t *testing.T) {
	var d config.Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.Std() != 90*time.Second || d.String() != "1m30s" {
		t.Fatal(d, err)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Fatal("accepted")
	}
	if b, _ := config.Duration(-time.Second).MarshalText(); string(b) != "-1s" {
		t.Fatal(string(b))
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"window", "windwo", 1}, {"", "abc", 3}, {"abc", "abc", 0}, {"kitten", "sitting", 3}} {
		if got := config.EditDistance(c.a, c.b); got != c.d {
			t.Errorf("%s/%s: %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

// FuzzDecodeYAML: any document decodes or fails with a located error,
// never a panic, and the alias expansion stays bounded.
func FuzzDecodeYAML(f *testing.F) {
	for _, s := range []string{"block: { window: 1s }", "blocks: { a: &x {window: 2s}, b: *x }", "range: [1, 2]",
		"a: &a [*a]", "<<: {window: 1s}", "share: 20%", "blocks:\n  x:\n    <<: [{window: 1s}]\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d doc
		_, err := config.DecodeYAML([]byte(s), "f.yaml", &d)
		if err != nil && !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Fatalf("error not located in the file: %v", err)
		}
		_ = fmt.Sprint(d)
	})
}

func TestByteSize(t *testing.T) {
	good := map[string]config.ByteSize{"512MiB": 512 << 20, "64KiB": 64 << 10, "20GiB": 20 << 30, "1GB": 1e9, "4096": 4096, "1.5KiB": 1536, "10 mb": 10e6, "0": 0, "2k": 2048}
	for in, want := range good {
		got, err := config.ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("config.ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1KiB", "1XB", "NaN", "1e30GiB", "inf"} {
		if _, err := config.ParseByteSize(in); err == nil {
			t.Errorf("config.ParseByteSize(%q): want an error", in)
		}
	}
	if s := config.ByteSize(512 << 20).String(); s != "512MiB" {
		t.Errorf("String = %q", s)
	}
	if s := config.ByteSize(1500).String(); s != "1500B" {
		t.Errorf("String = %q", s)
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"512MiB", "1.5GB", "-1", "1e400", "k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := config.ParseByteSize(s)
		if err == nil && v < 0 {
			t.Fatalf("config.ParseByteSize(%q) = %d", s, v)
		}
	})
}

type cred struct {
	Name  string `yaml:"name"`
	Token string `yaml:"token"`
}

type secrets struct {
	Tokens  []cred            `yaml:"tokens"`
	APIKeys []string          `yaml:"api_keys"`
	Secret  map[string]string `yaml:"secret"`
	Key     struct{ V int }   `yaml:"key"`
	Names   []string          `yaml:"names"`
}

// TestDecodeYAMLNeverQuotesASecret: a type error under a key that holds
// credentials names the key and the kind of value, never the value: a
// token typed where a list or a mapping belongs was printed in the error
// (admin_auth.tokens: expected a list, got "TOKEN", with "did you mean
// [TOKEN]?" besides), and so landed in a terminal, CI log or journal.
// Elsewhere the value is still quoted.
func TestDecodeYAMLNeverQuotesASecret(t *testing.T) {
	const tok = "S3CRET-value-do-not-print"
	for name, c := range map[string]struct{ src, want string }{
		"scalar for a list of credentials": {"tokens: " + tok + "\n", `tokens: expected a list, got a value of 25 characters (not shown: tokens holds secrets)`},
		"scalar for a credential mapping":  {"tokens: [" + tok + "]\n", `tokens[0]: expected a mapping with keys name, token, got a value of 25 characters`},
		"scalar for a list of keys":        {"api_keys: " + tok + "\n", `api_keys: expected a list, got a value of 25 characters`},
		"scalar for a secret mapping":      {"secret: " + tok + "\n", `secret: expected a mapping of names, got a value of 25`},
		"scalar for a key mapping":         {"key: " + tok + "\n", `key: expected a mapping with keys v, got a value of 25`},
	} {
		t.Run(name, func(t *testing.T) {
			var s secrets
			_, err := config.DecodeYAML([]byte(c.src), "t.yaml", &s)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), tok) {
				t.Fatalf("got %v\nwant an error containing %s and not the value", err, c.want)
			}
		})
	}
	var s secrets
	if _, err := config.DecodeYAML([]byte("names: plain\n"), "t.yaml", &s); err == nil || !strings.Contains(err.Error(), `got "plain" (did you mean [plain]?)`) {
		t.Fatalf("a non-secret value is still quoted: %v", err)
	}
}
