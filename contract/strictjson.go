package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of a request body (arrays and objects):
// deeper documents are refused before any schema is looked at.
const maxJSONDepth = 512

// strictJSON finds what JSON Schema validation cannot see because the
// validator decodes the body into a map first: duplicate object keys
// (the validator keeps the last, an upstream may keep the first, so a
// checked value and a used value differ) and text that is not UTF-8
// (RFC 8259 section 8.1; decoders disagree on what it means). It returns
// nil for a body without either; syntax errors are left to the validator,
// which reports them with their position.
func strictJSON(body []byte) *Violation {
	if !utf8.Valid(body) {
		i := 0
		for i < len(body) {
			r, n := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return &Violation{In: "body", Message: fmt.Sprintf("the body is not UTF-8 text (invalid byte 0x%02x at offset %d)", body[i], i)}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		obj  bool
		keys map[string]struct{}
		path []string
		next string // object: the key whose value comes next ("" before one)
		idx  int    // array: the index of the next element
		key  bool   // object: the next token is a key
	}
	var stack []*frame
	var path []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // the validator reports syntax errors
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				path = top.path
				continue
			}
			k, _ := tok.(string)
			if _, dup := top.keys[k]; dup {
				return &Violation{In: "body", Pointer: pointer(append(append([]string(nil), path...), k)),
					Message: fmt.Sprintf("key %s appears twice in one object; send it once", strconv.Quote(k))}
			}
			top.keys[k] = struct{}{}
			top.next, top.key = k, false
			continue
		}
		// A value (or the end of an array).
		var here []string
		if top != nil {
			if top.obj {
				here = append(append([]string(nil), path...), top.next)
				top.key = true
			} else {
				if d, ok := tok.(json.Delim); ok && d == ']' {
					stack = stack[:len(stack)-1]
					path = top.path
					continue
				}
				here = append(append([]string(nil), path...), strconv.Itoa(top.idx))
				top.idx++
			}
		}
		if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') {
			if len(stack) >= maxJSONDepth {
				return &Violation{In: "body", Pointer: pointer(here), Message: fmt.Sprintf("the body nests deeper than %d arrays and objects", maxJSONDepth)}
			}
			f := &frame{obj: d == '{', path: path, key: d == '{'}
			if f.obj {
				f.keys = map[string]struct{}{}
			}
			stack = append(stack, f)
			path = here
		}
	}
}
