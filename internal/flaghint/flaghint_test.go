package flaghint

import (
	"bytes"
	"flag"
	"testing"
)

func TestAnnotate(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"--confg", "flag provided but not defined: -confg (did you mean --config?)\nusage\n"},
		{"-chekc", "flag provided but not defined: -chekc (did you mean --check?)\nusage\n"},
		{"--msg-id=a", "flag provided but not defined: -msg-id (did you mean --id?)\nusage\n"},
		{"--zzzzzzzz", "flag provided but not defined: -zzzzzzzz\nusage\n"},
		{"-h", ""},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		var buf bytes.Buffer
		fs.SetOutput(&buf)
		fs.Usage = func() { buf.WriteString("usage\n") }
		fs.String("config", "", "")
		fs.Bool("check", false, "")
		fs.String("id", "", "")
		fs.Bool("v", false, "")
		err := fs.Parse([]string{tc.arg})
		got := string(Annotate(fs, err, buf.Bytes()))
		if tc.arg == "-h" {
			if got != "usage\n" {
				t.Errorf("%s: %q", tc.arg, got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.arg, got, tc.want)
		}
	}
}

func FuzzSuggest(f *testing.F) {
	f.Add("confg")
	f.Add("")
	f.Add("-=-")
	f.Fuzz(func(t *testing.T, name string) {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.String("config", "", "")
		fs.String("id", "", "")
		if s := Suggest(fs, name); s != "" && s != "config" && s != "id" {
			t.Fatalf("Suggest(%q) = %q", name, s)
		}
	})
}

func TestClosest(t *testing.T) {
	names := []string{"broker", "demo", "gateway", "load", "version"}
	for in, want := range map[string]string{"gatway": "gateway", "brokr": "broker", "lod": "load", "xyzzy": "", "": ""} {
		if got := Closest(in, names); got != want {
			t.Errorf("Closest(%q) = %q, want %q", in, got, want)
		}
	}
}
