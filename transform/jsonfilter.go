package transform

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// jsonNode is one level of a compiled JSON allow-list. A node with all set
// keeps its whole value; otherwise only the listed members of objects (and,
// element-wise, of objects in arrays) are kept.
type jsonNode struct {
	all      bool
	children map[string]*jsonNode
}

// validateAllow reports malformed allow-list paths.
func validateAllow(paths []string) []error {
	var errs []error
	for _, p := range paths {
		if !utf8.ValidString(p) {
			errs = append(errs, fmt.Errorf("json_allow: path %q: expected valid UTF-8", p))
			continue
		}
		for seg := range strings.SplitSeq(p, ".") {
			if seg == "" {
				errs = append(errs, fmt.Errorf("json_allow: path %q: empty segment; expected names separated by single dots such as \"driver.name\"", p))
				break
			}
		}
	}
	return errs
}

// compileAllow builds the allow tree; nil when paths is empty (no filter).
func compileAllow(paths []string) *jsonNode {
	if len(paths) == 0 {
		return nil
	}
	root := &jsonNode{children: map[string]*jsonNode{}}
	for _, p := range paths {
		n := root
		for seg := range strings.SplitSeq(p, ".") {
			if n.all {
				break // an ancestor is kept whole
			}
			c := n.children[seg]
			if c == nil {
				c = &jsonNode{children: map[string]*jsonNode{}}
				n.children[seg] = c
			}
			n = c
		}
		n.all, n.children = true, nil
	}
	return root
}

// filterJSON appends to dst the document src (which must be valid JSON,
// as checked by json.Valid) keeping only allowed paths:
//
//   - a member whose path is allowed is kept whole, byte for byte;
//   - an object on the way to an allowed path is kept with only its
//     allowed members (possibly none: "{}");
//   - an array on the way is filtered element by element, dropping the
//     elements that keep nothing (scalars where objects were expected);
//   - a scalar (string, number, boolean, null) where an object was
//     expected is dropped; at the top level it becomes null.
//
// Structure is written compactly. The output is never longer than src.
func filterJSON(dst, src []byte, root *jsonNode) []byte {
	i := skipWS(src, 0)
	mark := len(dst)
	dst, _, kept := filterValue(dst, src, i, root)
	if !kept {
		dst = append(dst[:mark], "null"...)
	}
	return dst
}

// filterValue filters the value starting at src[i]; it returns dst, the
// index after the value and whether anything was kept (dst is unchanged
// when not).
func filterValue(dst, src []byte, i int, n *jsonNode) ([]byte, int, bool) {
	if n.all {
		end := skipValue(src, i)
		return append(dst, src[i:end]...), end, true
	}
	switch src[i] {
	case '{':
		dst = append(dst, '{')
		i++
		first := true
		for {
			i = skipWS(src, i)
			if src[i] == '}' {
				i++
				break
			}
			kEnd := skipString(src, i)
			key := src[i:kEnd]
			i = skipWS(src, kEnd) + 1 // ':'
			i = skipWS(src, i)
			if child := n.child(key); child != nil {
				mark := len(dst)
				if !first {
					dst = append(dst, ',')
				}
				dst = append(dst, key...)
				dst = append(dst, ':')
				var kept bool
				if dst, i, kept = filterValue(dst, src, i, child); kept {
					first = false
				} else {
					dst = dst[:mark]
				}
			} else {
				i = skipValue(src, i)
			}
			i = skipWS(src, i)
			if src[i] == ',' {
				i++
			}
		}
		return append(dst, '}'), i, true
	case '[':
		dst = append(dst, '[')
		i++
		first := true
		for {
			i = skipWS(src, i)
			if src[i] == ']' {
				i++
				break
			}
			mark := len(dst)
			if !first {
				dst = append(dst, ',')
			}
			var kept bool
			if dst, i, kept = filterValue(dst, src, i, n); kept {
				first = false
			} else {
				dst = dst[:mark]
			}
			i = skipWS(src, i)
			if src[i] == ',' {
				i++
			}
		}
		return append(dst, ']'), i, true
	}
	return dst, skipValue(src, i), false
}

// child returns the node of the member named by the JSON string key
// (quotes included), or nil.
func (n *jsonNode) child(key []byte) *jsonNode {
	name := key[1 : len(key)-1]
	for _, c := range name {
		if c == '\\' {
			var s string
			if json.Unmarshal(key, &s) != nil {
				return nil
			}
			return n.children[s]
		}
	}
	return n.children[string(name)] // no allocation for a map lookup
}

func skipWS(src []byte, i int) int {
	for i < len(src) {
		switch src[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the string starting at src[i].
func skipString(src []byte, i int) int {
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(src)
}

// skipValue returns the index after the value starting at src[i].
func skipValue(src []byte, i int) int {
	switch src[i] {
	case '"':
		return skipString(src, i)
	case '{', '[':
		depth := 0
		for ; i < len(src); i++ {
			switch src[i] {
			case '"':
				i = skipString(src, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(src)
	}
	for i < len(src) {
		switch src[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
		i++
	}
	return i
}
