// Package config is what every configurable part of switchyard shares:
// strict YAML decoding that names the exact key of every problem (file,
// line, column, key path, what was given and what was expected, with
// did-you-mean for unknown keys, through flow style, aliases and merge
// keys), Source to locate problems found later by validation, and the
// value types written as text (Duration, Percent).
//
// It is a leaf: each building block declares its own Config with yaml
// tags and documents its defaults, and the programs (gateway, broker)
// embed those in their file schemas and decode them here.
package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is a configuration problem located in a file. Path is the key path
// in dotted form ("upstreams.rides.retry.backoff", "routes[0].match.host");
// Line and Column (1-based) are 0 when unknown.
type Error struct {
	File   string
	Path   string
	Line   int
	Column int
	Msg    string
	// Err is the cause, when there is one to test for (ErrEmpty).
	Err error
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrEmpty is the cause of the error for a document with no content.
var ErrEmpty = errors.New("empty document")

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Source is a decoded document: its name and the position of every key
// path written in it, to locate problems that validation finds later.
type Source struct {
	file  string
	paths map[string]pos
}

// NewSource returns the Source of a document built in code rather than
// decoded from a file (a program assembling another program's config):
// its errors carry name and the key path, with no line or column.
func NewSource(name string) *Source { return &Source{file: name, paths: map[string]pos{}} }

// File returns the name of the document.
func (s *Source) File() string { return s.file }

// Written reports whether the key path was written in the document (as
// opposed to left to its default).
func (s *Source) Written(path string) bool {
	_, ok := s.paths[path]
	return ok
}

// Errorf returns an *Error located at the key path.
func (s *Source) Errorf(path, format string, args ...any) error {
	at := s.pos(path)
	return &Error{File: s.file, Path: path, Line: at.line, Column: at.col, Msg: fmt.Sprintf(format, args...)}
}

// pos returns the position of path, or of its closest ancestor in the
// document (a path such as routes[0].name may name a default that is not
// written).
func (s *Source) pos(path string) pos {
	if s == nil {
		return pos{}
	}
	for path != "" {
		if l, ok := s.paths[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return pos{}
}

// KeyPather is an error that knows which key inside a block's section it
// is about (a FieldError); Wrap appends that key to the section's path.
type KeyPather interface {
	error
	KeyPath() string
}

// Wrap locates err at path; it returns nil for a nil err, and one located
// error per joined error inside err. Each located error unwraps to its
// original, so errors.Is and errors.As still see the cause.
func (s *Source) Wrap(path string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, s.Wrap(path, e))
		}
		return errors.Join(out...)
	}
	var located *Error
	if errors.As(err, &located) {
		return err
	}
	msg := err.Error()
	var kp KeyPather
	if errors.As(err, &kp) && kp.KeyPath() != "" {
		// A component located the problem inside its section
		// ("jwt.public_keys[0]"): name that key.
		path = Join(path, kp.KeyPath())
		if u := errors.Unwrap(kp); u != nil {
			msg = u.Error()
		}
	}
	at := s.pos(path)
	return &Error{File: s.file, Path: path, Line: at.line, Column: at.col, Msg: msg, Err: err}
}

// FieldError is a block's validation error about one of its keys, given
// by its yaml key path inside the block ("window", "on[2]"); Source.Wrap
// turns it into an error at that key's position in the file.
type FieldError struct {
	Path string
	Err  error
}

// Fieldf returns a *FieldError for the key path.
func Fieldf(path, format string, args ...any) error {
	return &FieldError{Path: path, Err: fmt.Errorf(format, args...)}
}

func (e *FieldError) Error() string   { return e.Path + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error   { return e.Err }
func (e *FieldError) KeyPath() string { return e.Path }

// DecodeYAML strictly decodes the YAML document data into v (a pointer to
// a struct whose fields carry yaml tags); name is used in errors. Every
// unknown key and every bad value is reported, each at its own position.
//
// An empty document (nothing, only comments, or null) is an error whose
// cause is ErrEmpty; a caller for which that means "all defaults" tests
// for it with errors.Is.
//
// When there are unknown keys or bad values, DecodeYAML still decodes the
// rest: v holds every good value (each bad one left at its zero value or,
// in a list, left out; a key written twice at its first value) and the
// Source is returned with the error, so a caller that wants to report
// everything at once can validate what was decoded and add those problems
// (dropping those at a key path already reported). v must not be used for
// anything else. The Source is nil when the document could not be read at
// all (invalid YAML, not a mapping, aliases expanding too far).
func DecodeYAML(data []byte, name string, v any) (*Source, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "the document is empty: expected a YAML mapping", Err: ErrEmpty}
		}
		return nil, &Error{File: name, Line: lineOf(err.Error()), Msg: "invalid YAML: " + stripLine(err.Error())}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, &Error{File: name, Line: root.Line, Column: root.Column, Msg: "the document is empty (null): expected a YAML mapping", Err: ErrEmpty}
	}
	t := reflect.TypeOf(v).Elem()
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: name, Line: root.Line, Column: root.Column,
			Msg: fmt.Sprintf("expected a YAML mapping at the top level with keys %s, got %s", fieldList(yamlFields(t)), describe(root))}
	}
	loc := &locations{lines: map[int]string{}, paths: map[string]pos{}}
	w := &walker{file: name, loc: loc, aliases: map[aliasKey]bool{}}
	w.walk(root, t, "", "")
	if len(w.errs) > 0 {
		if w.visits > maxVisits {
			return nil, errors.Join(w.errs...)
		}
		// The walk left out every bad value and pair: decode the rest
		// for the caller's validation. Should the decoder still fail
		// (the walk missed something), there is nothing to validate.
		if root.Decode(v) != nil {
			return nil, errors.Join(w.errs...)
		}
		return &Source{file: name, paths: loc.paths}, errors.Join(w.errs...)
	}
	if err := root.Decode(v); err != nil {
		// The walk decodes every leaf, so this is a backstop: locate what
		// the decoder reports by its line.
		return nil, decodeErrors(err, name, loc.lines)
	}
	return &Source{file: name, paths: loc.paths}, nil
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

func stripLine(msg string) string {
	return strings.TrimPrefix(lineRe.ReplaceAllString(msg, ""), "yaml: ")
}

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

// walker walks the YAML tree beside the Go type it will decode into. It
// rejects unknown keys (with a did-you-mean suggestion), decodes every leaf
// on its own so a bad value is blamed on its own key with its own line and
// column (block or flow style alike), follows aliases and merge keys (<<)
// with YAML's semantics, and records the position of every key path so
// later validation errors can name it. It takes every bad value out of the
// tree (set to null, or its pair removed), so that the rest decodes.
type walker struct {
	file    string
	loc     *locations
	errs    []error
	aliases map[aliasKey]bool // anchored nodes already checked, per type
	visits  int               // nodes visited, bounded by maxVisits
}

type aliasKey struct {
	n *yaml.Node
	t reflect.Type
}

// maxVisits bounds the work of following aliases and merges; a document of
// nested aliases ("billion laughs") stops here instead of expanding.
const maxVisits = 200_000

// maxDepth bounds how deep the key check descends; real configs are far
// shallower.
const maxDepth = 64

func (w *walker) errorf(n *yaml.Node, path, via, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if via != "" {
		msg += " (" + via + ")"
	}
	w.errs = append(w.errs, &Error{File: w.file, Line: n.Line, Column: n.Column, Path: path, Msg: msg})
}

// walk checks n as a value of type t at path. via, when not empty, says
// how n was reached (through an alias or a merge key), for the message.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path, via string) {
	if w.visits++; w.visits > maxVisits {
		if w.visits == maxVisits+1 {
			w.errorf(n, path, via, "too many nodes after expanding aliases and merge keys (more than %d)", maxVisits)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		if path != "" {
			w.loc.add(path, n.Line, n.Column)
		}
		if via == "" {
			via = fmt.Sprintf("through alias *%s at line %d:%d", n.Value, n.Line, n.Column)
		}
		w.walk(n.Alias, t, path, via)
		return
	}
	if strings.Count(path, ".")+strings.Count(path, "[") > maxDepth {
		w.errorf(n, path, via, "nested deeper than %d levels", maxDepth)
		blank(n)
		return
	}
	if path != "" {
		w.loc.add(path, n.Line, n.Column)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Anchor != "" {
		// Checked once per type it is used as: an alias to it as the same
		// type needs no second check (and would repeat its errors).
		k := aliasKey{n, t}
		if w.aliases[k] {
			return
		}
		w.aliases[k] = true
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value: the zero value
	}
	switch {
	case custom(t):
		if !w.leaf(n, t, path, via) {
			blank(n)
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.errorf(n, path, via, "expected a mapping with keys %s, got %s", fieldList(yamlFields(t)), describeAt(n, path))
			blank(n)
			return
		}
		fields := yamlFields(t)
		for _, kv := range w.pairs(n, path, via) {
			p := Join(path, kv.k.Value)
			ft, ok := fields[kv.k.Value]
			if !ok {
				w.errorf(kv.k, p, kv.via, "unknown key %q: %sexpected one of %s", kv.k.Value, suggest(kv.k.Value, fields), fieldList(fields))
				kv.drop()
				continue
			}
			w.loc.add(p, kv.k.Line, kv.k.Column)
			w.walk(kv.v, ft, p, kv.via)
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.errorf(n, path, via, "expected a mapping of names, got %s", describeAt(n, path))
			blank(n)
			return
		}
		for _, kv := range w.pairs(n, path, via) {
			if kv.k.Kind != yaml.ScalarNode {
				// A key that is a list or mapping has no key path of
				// its own: name the mapping it is in.
				w.errorf(kv.k, path, kv.via, "expected a name as the key, got %s", describe(kv.k))
				kv.drop()
				continue
			}
			p := Join(path, kv.k.Value)
			if !w.leaf(kv.k, t.Key(), p, kv.via) {
				kv.drop()
				continue
			}
			w.loc.add(p, kv.k.Line, kv.k.Column)
			w.walk(kv.v, t.Elem(), p, kv.via)
		}
	case t.Kind() == reflect.Array:
		if n.Kind != yaml.SequenceNode || len(n.Content) != t.Len() {
			w.errorf(n, path, via, "expected a list of %d values, got %s", t.Len(), describeAt(n, path))
			blank(n)
			return
		}
		for i, v := range n.Content {
			w.walk(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i), via)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		if n.Kind != yaml.SequenceNode {
			hint := ""
			if n.Kind == yaml.ScalarNode && scalarOnly(t.Elem()) && !secretPath(path) {
				hint = fmt.Sprintf(" (did you mean [%s]?)", n.Value)
			}
			w.errorf(n, path, via, "expected a list, got %s%s", describeAt(n, path), hint)
			blank(n)
			return
		}
		for i, v := range n.Content {
			w.walk(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i), via)
		}
	default:
		if !w.leaf(n, t, path, via) {
			blank(n)
		}
	}
}

// blank takes a bad value out of the tree: it becomes null (the zero
// value), keeping its position.
func blank(n *yaml.Node) {
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

// leaf decodes a scalar (or a type with its own decoding) on its own, so
// an error names this very value. It reports whether the value is good.
func (w *walker) leaf(n *yaml.Node, t reflect.Type, path, via string) bool {
	if n.Kind != yaml.ScalarNode && scalarOnly(t) {
		w.errorf(n, path, via, "expected %s, got %s", kindName(t), describeAt(n, path))
		return false
	}
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err != nil {
		msg := stripLine(err.Error())
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			msg = stripLine(te.Errors[0])
			if strings.HasPrefix(msg, "cannot unmarshal") {
				msg = fmt.Sprintf("expected %s, got %s", kindName(t), describeAt(n, path))
			}
		}
		if isDuration(t) && n.Kind == yaml.ScalarNode {
			msg = fmt.Sprintf("invalid duration %q: expected %s%s", n.Value, kindName(t), durationHint(n.Value))
		}
		w.errorf(n, path, via, "%s", msg)
		return false
	}
	if t == durationType && v.Elem().Int() < 0 {
		// Block settings are spans of time. (Duration, for settings that
		// also travel as JSON, is range-checked by its owner: the
		// broker's dedup_window is disabled by a negative one.)
		w.errorf(n, path, via, "negative duration %q: expected a duration such as \"250ms\" or \"10s\"", n.Value)
		return false
	}
	return true
}

var (
	durationType     = reflect.TypeOf(time.Duration(0))
	textDurationType = reflect.TypeOf(Duration(0))
)

func isDuration(t reflect.Type) bool { return t == durationType || t == textDurationType }

// durationHint guesses what a mistyped duration meant: "10" (no unit) or
// "300 ms" (a space).
func durationHint(v string) string {
	v = strings.TrimSpace(v)
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return fmt.Sprintf(" (did you mean %q? a duration needs a unit)", v+"s")
	}
	if c := strings.ReplaceAll(v, " ", ""); c != v {
		if _, err := time.ParseDuration(c); err == nil {
			return fmt.Sprintf(" (did you mean %q?)", c)
		}
	}
	return ""
}

// custom reports whether t decodes itself: a yaml.Unmarshaler, or an
// encoding.TextUnmarshaler read from its text form (Duration,
// wal.SyncPolicy).
func custom(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return p.Implements(unmarshalerType) || p.Implements(obsoleteUnmarshalerType) || p.Implements(textUnmarshalerType)
}

// scalarOnly reports whether a value of type t is written as a scalar:
// a plain value, or a type read from its text form alone (yaml would
// decode a mapping into its fields).
func scalarOnly(t reflect.Type) bool {
	if textOnly(t) {
		return true
	}
	if custom(t) {
		return false // it says what it accepts
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Interface:
		return false
	}
	return true
}

// textOnly reports whether t decodes itself from text alone.
func textOnly(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return p.Implements(textUnmarshalerType) && !p.Implements(unmarshalerType) && !p.Implements(obsoleteUnmarshalerType)
}

type pair struct {
	k, v *yaml.Node
	via  string
	in   *yaml.Node // the mapping the pair is written in
}

// drop removes the pair from its mapping (a bad key), so that the rest
// decodes.
func (p pair) drop() { dropKey(p.in, p.k) }

func dropKey(m, k *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i] == k {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// pairs returns the key/value pairs of mapping n with merge keys (<<)
// resolved as YAML defines them: keys written in n win over merged ones,
// and among merged mappings the first listed wins. A key written twice in
// n is reported (and its second pair removed); a merge key whose value is
// not mappings is reported (and removed).
func (w *walker) pairs(n *yaml.Node, path, via string) []pair {
	var out []pair
	seen := map[string]bool{}
	var merges, drops []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, k, v)
			continue
		}
		if k.Kind == yaml.ScalarNode && seen[k.Value] {
			w.errorf(k, Join(path, k.Value), via, "duplicate key %q", k.Value)
			drops = append(drops, k)
			continue
		}
		seen[k.Value] = true
		out = append(out, pair{k, v, via, n})
	}
	for i := 0; i < len(merges); i += 2 {
		mk, m := merges[i], merges[i+1]
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, s := range srcs {
			mvia := via
			if s.Kind == yaml.AliasNode && s.Alias != nil {
				if mvia == "" {
					mvia = fmt.Sprintf("merged by <<: *%s at line %d:%d", s.Value, s.Line, s.Column)
				}
				s = s.Alias
			}
			if s.Kind != yaml.MappingNode {
				w.errorf(s, path, via, "merge key <<: expected a mapping or a list of mappings, got %s", describe(s))
				drops = append(drops, mk)
				continue
			}
			if w.visits += len(s.Content); w.visits > maxVisits {
				return out
			}
			for _, kv := range w.pairs(s, path, mvia) {
				if seen[kv.k.Value] {
					continue // overridden
				}
				seen[kv.k.Value] = true
				out = append(out, kv)
			}
		}
	}
	for _, k := range drops {
		dropKey(n, k)
	}
	return out
}

// describe names a node's kind and value for messages.
// describeAt is describe, except that a scalar under a key that holds
// secrets (secretPath) is not quoted: a config error must not print a
// token or password someone typed in the wrong place (a string where a
// list or an env:/file: reference was expected).
func describeAt(n *yaml.Node, path string) string {
	if n.Kind == yaml.ScalarNode && secretPath(path) {
		return fmt.Sprintf("a value of %d characters (not shown: %s holds secrets)", len([]rune(n.Value)), path)
	}
	return describe(n)
}

// secretKeys are the keys whose values (or list items) are, or may be by
// mistake, credentials.
var secretKeys = map[string]bool{
	"token": true, "tokens": true, "secret": true, "secrets": true, "password": true,
	"password_hash": true, "passwords": true, "api_key": true, "api_keys": true,
	"key": true, "keys": true, "hash": true, "credentials": true, "passphrase": true,
}

// secretPath reports whether a key path ("admin_auth.tokens[0]") names a
// secret's place: its last key, or the list it is an item of, is one of
// secretKeys.
func secretPath(path string) bool {
	last := path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		last = path[i+1:]
	}
	if i := strings.IndexByte(last, '['); i >= 0 {
		last = last[:i]
	}
	return secretKeys[strings.ToLower(last)]
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return fmt.Sprintf("%q", n.Value)
}

func kindName(t reflect.Type) string {
	if isDuration(t) {
		return "a duration such as \"250ms\" or \"10s\""
	}
	if textOnly(t) {
		// The zero value's text is an example of the form.
		if m, ok := reflect.Zero(t).Interface().(encoding.TextMarshaler); ok {
			if b, err := m.MarshalText(); err == nil && len(b) > 0 {
				return fmt.Sprintf("a single value such as %q", b)
			}
		}
		return "a single value"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// suggest returns `did you mean "x"? ` for the closest field name, or "".
func suggest(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	if best := Closest(key, names); best != "" {
		return fmt.Sprintf("did you mean %q? ", best)
	}
	return ""
}

// Closest returns the one of names that s is probably a typo of, ignoring
// case: the nearest by EditDistance, if within 2 edits or a third of the
// length of s; "" when none is that close. Ties go to the name that sorts
// first.
func Closest(s string, names []string) string {
	best, bestD := "", 0
	ls := strings.ToLower(s)
	for _, n := range names {
		d := EditDistance(ls, strings.ToLower(n))
		if best == "" || d < bestD || d == bestD && n < best {
			best, bestD = n, d
		}
	}
	if best == "" || bestD > max(2, len(s)/3) {
		return ""
	}
	return best
}

// EditDistance is the Levenshtein distance of a and b, with an adjacent
// swap counted as one edit.
func EditDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// locations maps lines to key paths (the deepest key seen on a line, for
// decode errors that only know the line) and key paths to their positions.
type locations struct {
	lines map[int]string
	paths map[string]pos
}

type pos struct{ line, col int }

func (l *locations) add(path string, line, col int) {
	l.lines[line] = path
	if _, ok := l.paths[path]; !ok {
		l.paths[path] = pos{line, col}
	}
}

var (
	textUnmarshalerType     = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	unmarshalerType         = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	obsoleteUnmarshalerType = reflect.TypeOf((*interface{ UnmarshalYAML(func(any) error) error })(nil)).Elem()
)

// Join appends key to a dotted key path.
func Join(path, key string) string {
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
