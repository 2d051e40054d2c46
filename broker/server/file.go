package server

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/wal"
)

// FileConfig is the broker's YAML configuration file. Unknown keys are
// errors.
//
//	data: /var/lib/switchyard/broker   # data directory (the --data flag wins)
//	fsync: batch                       # always | batch | interval:100ms | never
//	segment_bytes: 67108864
//	queues:
//	  orders:
//	    visibility_timeout: 30s
//	    max_deliveries: 5
//	    max_length: 10000
//	    overflow: block
//	topics:
//	  rides:
//	    queues: [orders]     # durable fan-out into these queues
//	streams:
//	  locations:
//	    max_age: 24h
type FileConfig struct {
	// Dir is the data directory. Default: the --data flag.
	Dir string `yaml:"data"`
	// Fsync is the fsync policy. Default batch.
	Fsync wal.SyncPolicy `yaml:"fsync"`
	// SegmentBytes is the log segment size in bytes. Default 64 MiB.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// Preallocate extends log segment files this many bytes ahead of their
	// data (see Config.Preallocate). Default 0 (off).
	Preallocate int64 `yaml:"preallocate"`
	// Queues declares queues, by name, created or updated on start.
	Queues map[string]broker.QueueConfig `yaml:"queues"`
	// Topics declares pub/sub topics, by name.
	Topics map[string]broker.TopicConfig `yaml:"topics"`
	// Streams declares replayable streams, by name.
	Streams map[string]broker.StreamConfig `yaml:"streams"`

	loc *fileLocator // where each key is, when parsed from a file
}

// LoadFile reads and validates a broker configuration file. Every error
// names the file and, for settings, the key path (queues.NAME.FIELD).
func LoadFile(path string) (FileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return FileConfig{}, fmt.Errorf("reading broker config: %w", err)
	}
	return ParseFile(path, data)
}

// ParseFile parses the YAML of a broker configuration file named path.
// Every problem is reported at once, each as PATH:LINE:COLUMN: KEY.PATH:
// what was given and what was expected (unknown keys with the closest
// known one), in the words of the file, never Go's.
func ParseFile(path string, data []byte) (FileConfig, error) {
	var fc FileConfig
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return fc, nil // an empty file configures nothing
		}
		return fc, yamlSyntaxErr(path, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return fc, nil
	}
	if root.Kind != yaml.MappingNode {
		return fc, fmt.Errorf("%s:%d:%d: expected a mapping of settings (data, fsync, queues, ...), got %s",
			path, root.Line, root.Column, describeNode(root))
	}
	fl := &fileLocator{file: path, pos: map[string][2]int{}}
	fl.check(root, reflect.TypeOf(fc), "")
	if len(fl.errs) > 0 {
		// Report the settings' own problems (overflow: drop, a bad name)
		// too, from what does decode, except where a problem is shown.
		_ = root.Decode(&fc)
		for _, le := range fl.locateEach(fc.Validate()) {
			if !fl.bad[le.path] {
				fl.errs = append(fl.errs, le.err)
			}
		}
		return FileConfig{}, errors.Join(fl.errs...)
	}
	if err := root.Decode(&fc); err != nil {
		// check accepts only what decodes; keep the file's name on it.
		return FileConfig{}, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := fc.Validate(); err != nil {
		return FileConfig{}, fl.locate(err)
	}
	fc.loc = fl
	return fc, nil
}

// yamlSyntaxErr words a YAML syntax error as FILE:LINE: invalid YAML: ...
func yamlSyntaxErr(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: invalid YAML: %s", file, m[1], msg[len(m[0]):])
	}
	return fmt.Errorf("%s: invalid YAML: %s", file, msg)
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

// fileLocator walks a config document beside the Go type it decodes
// into: it records where each key path is and collects located errors.
type fileLocator struct {
	file string
	pos  map[string][2]int // key path -> line, column of its value (of the key for names)
	errs []error
	bad  map[string]bool // key paths with an error in errs
}

func (fl *fileLocator) errorf(n *yaml.Node, path, format string, args ...any) {
	if fl.bad == nil {
		fl.bad = map[string]bool{}
	}
	fl.bad[path] = true
	fl.errs = append(fl.errs, fmt.Errorf("%s:%d:%d: %s: %s", fl.file, n.Line, n.Column, path, fmt.Sprintf(format, args...)))
}

var (
	durationType   = reflect.TypeOf(broker.Duration(0))
	syncPolicyType = reflect.TypeOf(wal.SyncPolicy{})

	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	yamlUnmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
)

// check compares node n with type t at key path.
func (fl *fileLocator) check(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		// The anchored value is checked where it is defined; following
		// aliases could expand without bound. The decoder limits them.
		return
	}
	if strings.Count(path, ".") > 16 {
		fl.badValue(n, path, "nested too deep")
		return
	}
	if path != "" {
		if _, ok := fl.pos[path]; !ok {
			fl.pos[path] = [2]int{n.Line, n.Column}
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // empty: the default
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			fl.badValue(n, path, "expected a duration like \"30s\", got %s", describeNode(n))
		} else if _, err := time.ParseDuration(n.Value); err != nil {
			fl.badValue(n, path, "expected a duration like \"30s\", got %s", describeNode(n))
		}
		return
	case t == syncPolicyType:
		if n.Kind != yaml.ScalarNode {
			fl.badValue(n, path, "expected always, batch, interval:DURATION or never, got %s", describeNode(n))
		} else if _, err := wal.ParseSyncPolicy(n.Value); err != nil {
			fl.badValue(n, path, "expected always, batch, interval:DURATION or never, got %s", describeNode(n))
		}
		return
	case reflect.PointerTo(t).Implements(textUnmarshalerType) || reflect.PointerTo(t).Implements(yamlUnmarshalerType):
		// A setting with its own syntax: its error is the explanation.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			fl.badValue(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			fl.badValue(n, path, "expected a mapping of settings, got %s", describeNode(n))
			return
		}
		fields := yamlFields(t)
		seen := map[string]bool{}
		var dups []int
		defer func() { dropPairs(n, dups) }()
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			if seen[k.Value] {
				fl.errorf(k, p, "set twice")
				dups = append(dups, i)
				continue
			}
			seen[k.Value] = true
			ft, ok := fields[k.Value]
			if !ok {
				fl.errorf(k, p, "%s", unknownKey(k.Value, fields))
				continue
			}
			fl.check(v, ft, p)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			fl.badValue(n, path, "expected a mapping of names to settings, got %s", describeNode(n))
			return
		}
		seen := map[string]bool{}
		var dups []int
		defer func() { dropPairs(n, dups) }()
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			if k.Kind != yaml.ScalarNode {
				fl.errorf(k, path, "expected a name, got %s", describeNode(k))
				dups = append(dups, i) // dropped, so the rest still decodes
				continue
			}
			if seen[k.Value] {
				fl.errorf(k, p, "declared twice")
				dups = append(dups, i)
				continue
			}
			seen[k.Value] = true
			fl.pos[p] = [2]int{k.Line, k.Column} // names are located at the name
			fl.check(v, t.Elem(), p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			fl.badValue(n, path, "expected a list like [a, b], got %s", describeNode(n))
			return
		}
		for i, e := range n.Content {
			fl.check(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		if n.Kind != yaml.ScalarNode {
			fl.badValue(n, path, "expected %s, got %s", expectKind(t), describeNode(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			fl.badValue(n, path, "expected %s, got %s", expectKind(t), describeNode(n))
		}
	}
}

// badValue reports a value that cannot be used and blanks it in the
// tree, so that the rest of the document still decodes (and is checked).
func (fl *fileLocator) badValue(n *yaml.Node, path, format string, args ...any) {
	fl.errorf(n, path, format, args...)
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

// dropPairs removes the key-value pairs at the key indexes from mapping n
// (duplicates, already reported).
func dropPairs(n *yaml.Node, keys []int) {
	for j := len(keys) - 1; j >= 0; j-- {
		i := keys[j]
		n.Content = append(n.Content[:i], n.Content[i+2:]...)
	}
}

func expectKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a value"
}

// describeNode shows what a node holds: a scalar as written (quoted
// unless it is a number or boolean), else its kind.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		switch n.Tag {
		case "!!int", "!!float", "!!bool":
			return v
		}
		return strconv.Quote(v)
	}
	return "nothing"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML keys of struct t to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// unknownKey words an unknown key: the closest known one when it looks
// like a typo, else the list.
func unknownKey(k string, fields map[string]reflect.Type) string {
	names := sortedKeys(fields)
	if best := config.Closest(k, names); best != "" {
		return fmt.Sprintf("unknown key, did you mean %q?", best)
	}
	return fmt.Sprintf("unknown key (known: %s)", strings.Join(names, ", "))
}

// locate prefixes each of the joined errors err, which start with a key
// path ("queues.orders.overflow ..."), with FILE:LINE:COLUMN of the
// longest recorded path it starts with (FILE alone if none).
func (fl *fileLocator) locate(err error) error {
	var errs []error
	for _, le := range fl.locateEach(err) {
		errs = append(errs, le.err)
	}
	return errors.Join(errs...)
}

type locatedPath struct {
	path string // the key path the error is located at ("" if none)
	err  error
}

func (fl *fileLocator) locateEach(err error) []locatedPath {
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []locatedPath
	for _, e := range errs {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			out = append(out, fl.locateEach(errors.Join(j.Unwrap()...))...)
			continue
		}
		msg := e.Error()
		where, path := fl.file, ""
		for p, lc := range fl.pos {
			if len(p) > len(path) && strings.HasPrefix(msg, p) && (len(msg) == len(p) || strings.ContainsRune(" :.[", rune(msg[len(p)]))) {
				where, path = fmt.Sprintf("%s:%d:%d", fl.file, lc[0], lc[1]), p
			}
		}
		out = append(out, locatedPath{path: path, err: &locatedError{msg: where + ": " + msg, err: e}})
	}
	return out
}

// locatedError is an error of the file with its place; it unwraps to the
// original (so errors.Is(err, ErrNotFound) and the like still work).
type locatedError struct {
	msg string
	err error
}

func (e *locatedError) Error() string { return e.msg }
func (e *locatedError) Unwrap() error { return e.err }

// Validate reports every problem, each prefixed by its key path.
func (fc FileConfig) Validate() error {
	var errs []error
	if err := broker.CheckSegmentBytes("segment_bytes", fc.SegmentBytes); err != nil {
		errs = append(errs, err)
	}
	if fc.Preallocate < 0 {
		errs = append(errs, fmt.Errorf("preallocate: %d must not be negative", fc.Preallocate))
	}
	for _, name := range sortedKeys(fc.Queues) {
		if !broker.ValidName(name) {
			errs = append(errs, fmt.Errorf("queues.%s: invalid queue name", name))
		}
		if err := fc.Queues[name].Validate(); err != nil {
			errs = append(errs, prefixErrs("queues."+name, err))
		}
	}
	for _, name := range sortedKeys(fc.Topics) {
		if !broker.ValidName(name) {
			errs = append(errs, fmt.Errorf("topics.%s: invalid topic name", name))
		}
		if err := fc.Topics[name].Validate(); err != nil {
			errs = append(errs, prefixErrs("topics."+name, err))
		}
	}
	for _, name := range sortedKeys(fc.Streams) {
		if !broker.ValidName(name) {
			errs = append(errs, fmt.Errorf("streams.%s: invalid stream name", name))
		}
		if err := fc.Streams[name].Validate(); err != nil {
			errs = append(errs, prefixErrs("streams."+name, err))
		}
	}
	return errors.Join(errs...)
}

// prefixErrs prefixes each joined error with the key path.
func prefixErrs(path string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = append(errs, fmt.Errorf("%s.%w", path, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s.%w", path, err)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Apply declares the file's queues, topics and streams on b.
func (fc FileConfig) Apply(b *engine.Broker) error {
	var errs []error
	for _, name := range sortedKeys(fc.Queues) {
		if err := b.Declare(name, fc.Queues[name]); err != nil {
			errs = append(errs, fmt.Errorf("queues.%s: %w", name, err))
		}
	}
	for _, name := range sortedKeys(fc.Topics) {
		if err := b.DeclareTopic(name, fc.Topics[name]); err != nil {
			errs = append(errs, fmt.Errorf("topics.%s: %w", name, err))
		}
	}
	for _, name := range sortedKeys(fc.Streams) {
		if err := b.DeclareStream(name, fc.Streams[name]); err != nil {
			errs = append(errs, fmt.Errorf("streams.%s: %w", name, err))
		}
	}
	if len(errs) > 0 && fc.loc != nil {
		return fc.loc.locate(errors.Join(errs...))
	}
	return errors.Join(errs...)
}

// Repair repairs the logs in the data directory dir (the queue log and
// every stream's log; see wal.Repair) with no broker running on it (it
// takes the directory lock): damaged records are skipped, everything
// intact is kept, a torn tail is cut. It returns what was dropped.
func Repair(dir string) ([]wal.Damage, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	lock, err := wal.LockDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	logs := []string{filepath.Join(dir, "log")}
	streams, _ := filepath.Glob(filepath.Join(dir, "streams", "*"))
	sort.Strings(streams)
	logs = append(logs, streams...)
	var all []wal.Damage
	for _, d := range logs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			continue
		}
		dmg, err := wal.Repair(d, wal.Options{MaxRecordBytes: 1 << 30})
		all = append(all, dmg...)
		if err != nil {
			return all, fmt.Errorf("repairing %q: %w", d, err)
		}
	}
	return all, nil
}
