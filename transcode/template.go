package transcode

import (
	"fmt"
	"net/url"
	"strings"
)

// A path template of a google.api.http rule:
//
//	Template = "/" Segments [ Verb ] ;
//	Segments = Segment { "/" Segment } ;
//	Segment  = "*" | "**" | LITERAL | Variable ;
//	Variable = "{" FieldPath [ "=" Segments ] "}" ;
//	FieldPath = IDENT { "." IDENT } ;
//	Verb     = ":" LITERAL ;
//
// "{name}" is "{name=*}". "**" matches any number of segments and may only
// be the last segment (before the verb), as the rule's documentation says.
type template struct {
	segs []tseg
	vars []tvar
	verb string
	raw  string
}

type tseg struct {
	lit  string // literal segment (unescaped form); "" for * and **
	kind byte   // 'l' literal, '*' one segment, '#' any number of segments (**)
}

// tvar binds segments [start, end) (end == -1: to the end, for **) to a
// field path.
type tvar struct {
	field      []string
	start, end int
}

// literals counts literal segments: the more specific template wins.
func (t *template) literals() int {
	n := 0
	for _, s := range t.segs {
		if s.kind == 'l' {
			n++
		}
	}
	return n
}

func parseTemplate(s string) (*template, error) {
	t := &template{raw: s}
	if !strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("path template %q must start with /", s)
	}
	rest := s[1:]
	// The verb follows the last ':' outside braces.
	depth, verbAt := 0, -1
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '{':
			depth++
		case '}':
			depth--
		case ':':
			if depth == 0 {
				verbAt = i
			}
		}
	}
	if verbAt >= 0 {
		t.verb = rest[verbAt+1:]
		rest = rest[:verbAt]
		if t.verb == "" || strings.ContainsAny(t.verb, "/{}*") {
			return nil, fmt.Errorf("path template %q: bad verb %q", s, t.verb)
		}
	}
	var cur *tvar
	for i := 0; i <= len(rest); {
		j := i
		for j < len(rest) && rest[j] != '/' {
			j++
		}
		seg := rest[i:j]
		closeNow := false
		if strings.HasPrefix(seg, "{") {
			if cur != nil {
				return nil, fmt.Errorf("path template %q: nested variable", s)
			}
			body := seg[1:]
			name, sub, hasSub := strings.Cut(body, "=")
			closed := false
			if !hasSub {
				name, closed = strings.CutSuffix(body, "}")
				if !closed {
					return nil, fmt.Errorf("path template %q: unclosed variable %q", s, seg)
				}
				sub = "*"
			}
			fp, err := fieldPath(name)
			if err != nil {
				return nil, fmt.Errorf("path template %q: %v", s, err)
			}
			cur = &tvar{field: fp, start: len(t.segs)}
			seg = sub
			closeNow = !hasSub
		}
		end := closeNow
		if cur != nil && !closeNow {
			seg, end = strings.CutSuffix(seg, "}")
		}
		switch {
		case seg == "*":
			t.segs = append(t.segs, tseg{kind: '*'})
		case seg == "**":
			t.segs = append(t.segs, tseg{kind: '#'})
		case seg == "" || strings.ContainsAny(seg, "{}*=") || seg == "." || seg == "..":
			return nil, fmt.Errorf("path template %q: bad segment %q", s, rest[i:j])
		default:
			lit, err := url.PathUnescape(seg)
			if err != nil {
				return nil, fmt.Errorf("path template %q: %v", s, err)
			}
			t.segs = append(t.segs, tseg{kind: 'l', lit: lit})
		}
		if cur != nil && end {
			cur.end = len(t.segs)
			t.vars = append(t.vars, *cur)
			cur = nil
		}
		i = j + 1
	}
	if cur != nil {
		return nil, fmt.Errorf("path template %q: unclosed variable", s)
	}
	for i, sg := range t.segs {
		if sg.kind == '#' && i != len(t.segs)-1 {
			return nil, fmt.Errorf("path template %q: ** must be the last segment", s)
		}
	}
	seen := map[string]bool{}
	for i, v := range t.vars {
		k := strings.Join(v.field, ".")
		if seen[k] {
			return nil, fmt.Errorf("path template %q: variable %s bound twice", s, k)
		}
		seen[k] = true
		if t.segs[v.end-1].kind == '#' {
			t.vars[i].end = -1
		}
	}
	return t, nil
}

func fieldPath(s string) ([]string, error) {
	parts := strings.Split(s, ".")
	for _, p := range parts {
		if !isIdent(p) {
			return nil, fmt.Errorf("bad field path %q", s)
		}
	}
	return parts, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// binding is a matched variable: field path and its (unescaped) value.
type binding struct {
	field []string
	value string
}

// errTraversal marks a variable whose value holds a "." or ".." segment.
type errTraversal struct{ value string }

func (e errTraversal) Error() string {
	return fmt.Sprintf("path variable %q holds a '.' or '..' segment", e.value)
}

// match matches an escaped request path (r.URL.EscapedPath()). A variable
// over one segment ("*") gets the segment fully unescaped; one over
// several keeps "%2F" escaped (so a value cannot invent segments), as the
// google.api.http rules say. Values holding "." or ".." segments, once
// unescaped, are refused: a backend that joins them into a file or URL
// path would climb out of its directory.
func (t *template) match(escaped string) ([]binding, bool, error) {
	if !strings.HasPrefix(escaped, "/") {
		return nil, false, nil
	}
	p := escaped[1:]
	if t.verb != "" {
		var ok bool
		if p, ok = strings.CutSuffix(p, ":"+t.verb); !ok {
			return nil, false, nil
		}
	}
	parts := strings.Split(p, "/")
	last := t.segs[len(t.segs)-1].kind == '#'
	if last {
		if len(parts) < len(t.segs)-1 {
			return nil, false, nil
		}
		if len(parts) == len(t.segs)-1 { // ** matched nothing
			parts = append(parts, "")
		}
	} else if len(parts) != len(t.segs) {
		return nil, false, nil
	}
	for i, sg := range t.segs {
		if sg.kind == '#' {
			break
		}
		if sg.kind == '*' && parts[i] == "" {
			return nil, false, nil
		}
		if sg.kind == 'l' {
			u, err := url.PathUnescape(parts[i])
			if err != nil || u != sg.lit {
				return nil, false, nil
			}
		}
	}
	var out []binding
	for _, v := range t.vars {
		end := v.end
		if end < 0 {
			end = len(parts)
		}
		seg := parts[v.start:end]
		var val string
		if end-v.start == 1 && t.segs[v.start].kind == '*' {
			u, err := url.PathUnescape(seg[0])
			if err != nil {
				return nil, true, fmt.Errorf("path variable %s: %v", strings.Join(v.field, "."), err)
			}
			val = u
		} else {
			un := make([]string, len(seg))
			for i, s := range seg {
				u, err := unescapeKeepSlash(s)
				if err != nil {
					return nil, true, fmt.Errorf("path variable %s: %v", strings.Join(v.field, "."), err)
				}
				un[i] = u
			}
			val = strings.Join(un, "/")
		}
		for _, s := range strings.Split(strings.ReplaceAll(val, "%2F", "/"), "/") {
			if s == "." || s == ".." {
				return nil, true, errTraversal{val}
			}
		}
		if strings.ContainsRune(val, 0) {
			return nil, true, fmt.Errorf("path variable %s holds a NUL byte", strings.Join(v.field, "."))
		}
		out = append(out, binding{field: v.field, value: val})
	}
	return out, true, nil
}

// unescapeKeepSlash percent-decodes s except "%2F" (either case), which
// stays "%2F": a multi-segment variable's value keeps its segments.
func unescapeKeepSlash(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
			return "", fmt.Errorf("invalid escape %q", s[i:min(i+3, len(s))])
		}
		c := byte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		if c == '/' {
			b.WriteString("%2F")
		} else {
			b.WriteByte(c)
		}
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
