package httpapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/config"
)

// decodeBody strictly decodes a JSON request body into v (a pointer to a
// struct). Empty or blank data leaves v unchanged. Every problem is
// reported in the API's words: the field path ("queues[1]",
// "visibility_timeout"), what was given and what was expected; unknown
// fields are rejected by name (with a suggestion when one is close).
// Never a Go type name.
func decodeBody(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return syntaxErr(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		off := int(dec.InputOffset())
		// Point at the first byte of the extra data.
		for off < len(data) && isSpace(data[off]) {
			off++
		}
		return fmt.Errorf("invalid JSON at %s: unexpected data after the %s", position(data, off), kindOf(doc))
	}
	var errs []string
	check(doc, reflect.TypeOf(v).Elem(), "", &errs)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	if err := json.Unmarshal(data, v); err != nil {
		// check accepts only what decodes; keep a readable fallback.
		return fmt.Errorf("invalid body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// syntaxErr locates a JSON syntax error by line and column.
func syntaxErr(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off := int(se.Offset) - 1
		if off < 0 {
			off = 0
		}
		return fmt.Errorf("invalid JSON at %s: %s", position(data, off), se.Error())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("invalid JSON at %s: unexpected end of the body", position(data, len(data)))
	}
	return fmt.Errorf("invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// position is "line L, column C" of byte offset off (both from 1).
func position(data []byte, off int) string {
	if off > len(data) {
		off = len(data)
	}
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

var (
	durationType    = reflect.TypeOf(broker.Duration(0))
	reqDurationType = reflect.TypeOf(reqDuration(0))
	textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// check compares a generic JSON value with the Go type it will decode
// into, appending one message per problem.
func check(v any, t reflect.Type, path string, errs *[]string) {
	if v == nil {
		return // null leaves the field as it is, as encoding/json does
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bad := func() {
		*errs = append(*errs, fmt.Sprintf("%s: expected %s, got %s", label(path), expect(t), describe(v)))
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		s, ok := v.(string)
		if !ok {
			bad()
			return
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			bad()
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			bad()
			return
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				ft, ok = foldField(fields, k)
			}
			if !ok {
				*errs = append(*errs, unknownField(join(path, k), k, fields))
				continue
			}
			check(obj[k], ft, join(path, k), errs)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			bad()
			return
		}
		for k, e := range obj {
			check(e, t.Elem(), join(path, k), errs)
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			bad()
			return
		}
		for i, e := range arr {
			check(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			bad()
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			bad()
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			bad()
			return
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			bad()
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			bad()
			return
		}
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			bad()
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := v.(json.Number); !ok {
			bad()
		}
	}
}

func label(path string) string {
	if path == "" {
		return "body"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// expect describes in the API's words what a value of type t looks like.
func expect(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType || t == reqDurationType {
		return `a duration string like "30s"`
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.Struct:
		return "a JSON object"
	case reflect.Map:
		return "an object of " + plural(t.Elem())
	case reflect.Slice:
		return "an array of " + plural(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "another value"
}

func plural(t reflect.Type) string {
	e := expect(t)
	switch {
	case strings.HasPrefix(e, "a string"):
		return "strings"
	case e == "an integer":
		return "integers"
	case e == "a JSON object":
		return "objects"
	}
	return "values (" + e + ")"
}

// describe shows a generic JSON value: its kind and, for scalars, the
// value itself (long strings cut).
func describe(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			x = x[:40] + "..."
		}
		return "string " + strconv.Quote(x)
	case json.Number:
		return "number " + string(x)
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "null"
}

func kindOf(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "value"
}

// jsonFields maps the JSON names of t's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// foldField finds a field whose name equals k but for case, as
// encoding/json accepts.
func foldField(fields map[string]reflect.Type, k string) (reflect.Type, bool) {
	for n, t := range fields {
		if strings.EqualFold(n, k) {
			return t, true
		}
	}
	return nil, false
}

func unknownField(path, k string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	if s := config.Closest(k, names); s != "" {
		return fmt.Sprintf("%s: unknown field, did you mean %q?", path, s)
	}
	return fmt.Sprintf("%s: unknown field (known: %s)", path, strings.Join(names, ", "))
}
