package contract

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestSmuggling: bodies that a lenient check would pass while the upstream
// reads something else.
func TestSmuggling(t *testing.T) {
	srv, up, _ := newHarness(t, Config{})
	pt := `{"lat":1,"lng":2}`
	cases := []struct {
		name, ctype, body string
		want              int
	}{
		{"duplicate key, last valid", "application/json", `{"from":` + pt + `,"to":` + pt + `,"seats":99,"seats":2}`, 400},
		{"duplicate key, first valid", "application/json", `{"from":` + pt + `,"to":` + pt + `,"seats":2,"seats":99}`, 400},
		{"duplicate nested key", "application/json", `{"from":{"lat":1,"lat":500,"lng":2},"to":` + pt + `}`, 400},
		{"number beyond float64", "application/json", `{"from":` + pt + `,"to":` + pt + `,"seats":1e400}`, 400},
		{"huge integer", "application/json", `{"from":` + pt + `,"to":` + pt + `,"seats":100000000000000000000000000000000001}`, 400},
		{"trailing second document", "application/json", `{"from":` + pt + `,"to":` + pt + `}{"admin":true}`, 400},
		{"no content type", "", `{"from":` + pt + `,"to":` + pt + `}`, 415},
		{"form content type", "application/x-www-form-urlencoded", `from=1`, 415},
		{"json suffix", "application/evil+json", `{"from":` + pt + `,"to":` + pt + `,"admin":1}`, 415},
		{"bad utf8 in string", "application/json", "{\"from\":" + pt + ",\"to\":" + pt + ",\"note\":\"\xff\xfe\"}", 400},
		{"BOM", "application/json", "\xef\xbb\xbf{\"from\":" + pt + ",\"to\":" + pt + "}", 400},
		{"deep nesting", "application/json", `{"from":` + pt + `,"to":` + pt + `,"note":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`, 400},
	}
	for _, c := range cases {
		before := up.calls.Load()
		code, _, body := send(t, "POST", srv.URL+"/v1/rides", c.ctype, c.body)
		if code != c.want || up.calls.Load() != before {
			t.Errorf("%s: status %d (want %d), upstream calls +%d; %.300s", c.name, code, c.want, up.calls.Load()-before, body)
		}
	}
}

func TestStrictJSON(t *testing.T) {
	for _, c := range []struct{ body, ptr, msg string }{
		{`{"a":1,"b":2}`, "", ""},
		{`[{"a":1},{"a":2}]`, "", ""},
		{`{"a":{"x":1},"b":{"x":1}}`, "", ""},
		{`{"a":1,"a":2}`, "/a", "twice"},
		{`{"a":[{"k":1,"k":2}]}`, "/a/0/k", "twice"},
		{`{"a":[1,{"z":{},"z":1}]}`, "/a/1/z", "twice"},
		{`{"x/y":{"~":1,"~":2}}`, "/x~1y/~0", "twice"},
		{"\"\xc3\x28\"", "", "offset 1"},
		{strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1), "/0/0", "deeper"},
		{`{"a":`, "", ""}, // syntax: left to the validator
	} {
		v := strictJSON([]byte(c.body))
		if c.msg == "" {
			if v != nil {
				t.Errorf("%.40q: %+v, want none", c.body, v)
			}
			continue
		}
		if v == nil || !strings.Contains(v.Message, c.msg) || (c.ptr != "" && !strings.HasPrefix(v.Pointer, c.ptr)) {
			t.Errorf("%.40q: %+v, want pointer %s and %q", c.body, v, c.ptr, c.msg)
		}
	}
}

func FuzzStrictJSON(f *testing.F) {
	f.Add(`{"a":1,"a":2}`)
	f.Add(`[{"k":[1,2,{"k":1}]}]`)
	f.Add("\"\xff\"")
	f.Fuzz(func(t *testing.T, body string) {
		v := strictJSON([]byte(body))
		if v != nil && v.Message == "" {
			t.Fatalf("violation without a message: %+v", v)
		}
	})
}

// TestContentTypeTricks: media types spelled oddly, or sent twice.
func TestContentTypeTricks(t *testing.T) {
	srv, up, _ := newHarness(t, Config{})
	pt := `{"lat":1,"lng":2}`
	good := `{"from":` + pt + `,"to":` + pt + `}`
	bad := `{"from":` + pt + `,"to":` + pt + `,"admin":true}`
	for _, c := range []struct {
		name   string
		ctypes []string
		body   string
		want   int
	}{
		{"upper case media type", []string{"APPLICATION/JSON"}, good, 201},
		{"upper case, bad body", []string{"Application/Json"}, bad, 400},
		{"charset parameter, bad body", []string{"application/json; charset=utf-8"}, bad, 400},
		{"two content types", []string{"application/json", "text/plain"}, good, 400},
		{"two content types, second JSON", []string{"text/plain", "application/json"}, bad, 400},
	} {
		before := up.calls.Load()
		req, _ := http.NewRequest("POST", srv.URL+"/v1/rides", strings.NewReader(c.body))
		for _, ct := range c.ctypes {
			req.Header.Add("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		reached := up.calls.Load() != before
		if resp.StatusCode != c.want || reached != (c.want < 300) {
			t.Errorf("%s: %d (want %d), reached upstream %v; %.200s", c.name, resp.StatusCode, c.want, reached, b)
		}
	}
}
