package transform

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzJSONAllow checks the filter never panics, and that on valid JSON its
// output is valid JSON holding scalars only at allowed paths.
func FuzzJSONAllow(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":{"b":[1,{"c":2}]},"d":"x"}`, `[{"a":1},2,[{"a":{"z":1}}]]`, `"s"`, `{"a\u0022":1,"a":{"b":null}}`, ` { } `, `{"a":[[[{"b":1}]]]}`} {
		f.Add([]byte(s), "a,a.b")
		f.Add([]byte(s), "a.b.c,d")
	}
	f.Fuzz(func(t *testing.T, data []byte, paths string) {
		allow := strings.Split(paths, ",")
		if len(validateAllow(allow)) > 0 {
			return
		}
		if !json.Valid(data) {
			return // the hook refuses these before filtering
		}
		root := compileAllow(allow)
		out := filterJSON(nil, data, root)
		if !json.Valid(out) {
			t.Fatalf("invalid output %q from %q", out, data)
		}
		if len(out) > len(data) && !bytes.Equal(out, []byte("null")) {
			t.Fatalf("output %d bytes longer than input %d", len(out), len(data))
		}
		var v any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatal(err)
		}
		if path, ok := onlyAllowed(v, root, ""); !ok {
			t.Fatalf("output %s holds %q, not allowed by %q (input %s)", out, path, paths, data)
		}
	})
}

// onlyAllowed reports whether every scalar in v lies under an allowed path.
func onlyAllowed(v any, n *jsonNode, path string) (string, bool) {
	if n.all {
		return "", true
	}
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			c := n.children[k]
			if c == nil {
				return path + "." + k, false
			}
			if p, ok := onlyAllowed(child, c, path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		for _, e := range v {
			if p, ok := onlyAllowed(e, n, path+"[]"); !ok {
				return p, false
			}
		}
		return "", true
	case nil:
		return "", path == "" // the top-level null of a dropped scalar
	}
	return path, false
}
