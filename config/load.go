package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a configuration problem located in a file. Path is the key path
// in dotted form ("upstreams.rides.retry.backoff", "routes[0].match.host");
// Line is 0 when unknown.
type Error struct {
	File string
	Path string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads, strictly decodes and validates the gateway config file at path.
// Every problem found is reported (joined), each naming the file, the key
// path and what was expected.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a config document; name is used in errors.
func Parse(data []byte, name string) (*Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "config is empty: expected a YAML mapping with at least listen, upstreams and routes"}
		}
		return nil, &Error{File: name, Line: lineOf(err.Error()), Msg: "invalid YAML: " + stripLine(err.Error())}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: name, Line: root.Line, Msg: "expected a YAML mapping at the top level"}
	}
	loc := &locations{lines: map[int]string{}, paths: map[string]int{}}
	var errs []error
	checkKeys(root, reflect.TypeOf(Config{}), "", name, loc, &errs)
	var cfg Config
	if err := root.Decode(&cfg); err != nil {
		// Report unknown keys and type errors together; validating a
		// partially decoded config would add noise, so stop here.
		errs = append(errs, decodeErrors(err, name, loc.lines))
		return nil, errors.Join(errs...)
	}
	if err := cfg.validate(name, loc.paths); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &cfg, nil
}

var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

func lineOf(msg string) int {
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func stripLine(msg string) string { return lineRe.ReplaceAllString(msg, "") }

// decodeErrors turns yaml's "line N: ..." errors into located Errors.
func decodeErrors(err error, file string, lines map[int]string) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	errs := make([]error, 0, len(msgs))
	for _, m := range msgs {
		l := lineOf(m)
		errs = append(errs, &Error{File: file, Line: l, Path: lines[l], Msg: stripLine(m)})
	}
	return errors.Join(errs...)
}

// checkKeys walks the YAML tree beside the Go type it will decode into,
// rejecting unknown keys with their key path, and records the key path of
// every line so later decode errors can name it.
func checkKeys(n *yaml.Node, t reflect.Type, path, file string, loc *locations, errs *[]error) {
	if n.Kind == yaml.AliasNode {
		// The anchored content was checked where it was defined. Following
		// aliases here would expand "billion laughs" documents (and loop on
		// recursive ones); the decoder has its own alias limits.
		return
	}
	if strings.Count(path, ".")+strings.Count(path, "[") > maxDepth {
		*errs = append(*errs, &Error{File: file, Line: n.Line, Path: path, Msg: fmt.Sprintf("nested deeper than %d levels", maxDepth)})
		return
	}
	if path != "" {
		loc.add(path, n.Line)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // a scalar type with its own decoding (Duration, Percent ...)
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // the decoder reports the type mismatch
		}
		fields := yamlFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			loc.add(p, k.Line)
			if seen[k.Value] {
				*errs = append(*errs, &Error{File: file, Line: k.Line, Path: p, Msg: "duplicate key"})
			}
			seen[k.Value] = true
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, &Error{File: file, Line: k.Line, Path: p,
					Msg: fmt.Sprintf("unknown key %q: expected one of %s", k.Value, fieldList(fields))})
				continue
			}
			checkKeys(v, ft, p, file, loc, errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			loc.add(p, k.Line)
			if seen[k.Value] {
				*errs = append(*errs, &Error{File: file, Line: k.Line, Path: p, Msg: "duplicate name"})
			}
			seen[k.Value] = true
			checkKeys(v, t.Elem(), p, file, loc, errs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, v := range n.Content {
			checkKeys(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i), file, loc, errs)
		}
	}
}

// locations maps lines to key paths (the deepest key seen on a line, for
// decode errors that only know the line) and key paths to their lines.
type locations struct {
	lines map[int]string
	paths map[string]int
}

func (l *locations) add(path string, line int) {
	l.lines[line] = path
	if _, ok := l.paths[path]; !ok {
		l.paths[path] = line
	}
}

// maxDepth bounds how deep the key check descends; real configs are far
// shallower.
const maxDepth = 64

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func fieldList(fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
