// Package transcode translates HTTP/JSON requests into gRPC calls and their
// answers back into JSON, as Envoy's gRPC-JSON transcoder does: a route
// names a protobuf descriptor set (protoc --include_imports
// --descriptor_set_out) and the services it exposes; each method is
// reachable at the paths of its google.api.http annotation (path templates
// with {variables}, query parameters, a body of "*" or one field) and at
// POST /package.Service/Method with the request message as its JSON body.
//
// The transcoder is a middleware: it rewrites the request into a gRPC call
// (application/grpc, one length-prefixed message) that the gateway's proxy
// forwards like any gRPC call (to an h2 or h2c upstream, with its balancing,
// breakers and the route's deadline as grpc-timeout), then reads the gRPC
// answer and writes JSON. A gRPC status other than OK becomes the HTTP
// status of google.rpc.Code's canonical table, with an RFC 9457 problem
// body carrying the grpc-message. Server-streaming methods answer with
// newline-delimited JSON, one message per line.
package transcode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/switchyard/switchyard/config"
)

// Defaults and bounds.
const (
	DefaultMaxBody     = 1 << 20 // bytes of a JSON request body
	DefaultMaxResponse = 4 << 20 // bytes of a gRPC response message
	DefaultMaxDepth    = 32      // nesting of JSON objects and arrays in a request
	// MaxDescriptor bounds the descriptor set file read at load.
	MaxDescriptor = 32 << 20
)

// Config is a route's grpc_json block.
//
//	grpc_json:
//	  descriptor: protos/greeter.pb     # protoc --include_imports --descriptor_set_out
//	  services: [switchyard.demo.Greeter]
//	  max_body: 1MiB
//	  print: {use_proto_names: false, emit_unpopulated: true}
type Config struct {
	// Descriptor is the FileDescriptorSet file (binary, as protoc
	// --descriptor_set_out writes it; use --include_imports). Required.
	// Relative paths are relative to the working directory.
	Descriptor string `yaml:"descriptor"`
	// DescriptorSet is the set itself, for programs that embed it (Go
	// configs); Descriptor must then be empty.
	DescriptorSet []byte `yaml:"-"`
	// Services are the fully qualified services exposed. Required.
	Services []string `yaml:"services"`
	// MaxBody caps the JSON request body (413 beyond). Default 1 MiB.
	MaxBody config.ByteSize `yaml:"max_body"`
	// MaxResponse caps one gRPC response message (502 beyond). Default
	// 4 MiB.
	MaxResponse config.ByteSize `yaml:"max_response"`
	// MaxDepth caps the nesting of the request's JSON (400 beyond).
	// Default 32.
	MaxDepth int `yaml:"max_depth"`
	// IgnoreUnknownFields drops JSON fields the request message does not
	// have instead of answering 400.
	IgnoreUnknownFields bool `yaml:"ignore_unknown_fields"`
	// IgnoreUnknownQuery drops query parameters that name no field
	// instead of answering 400.
	IgnoreUnknownQuery bool `yaml:"ignore_unknown_query"`
	// Print shapes the JSON of responses.
	Print Print `yaml:"print"`
}

// Print are the response JSON options (protojson.MarshalOptions).
type Print struct {
	// EmitUnpopulated writes fields holding their zero value.
	EmitUnpopulated bool `yaml:"emit_unpopulated"`
	// UseProtoNames writes field names as in the .proto (snake_case)
	// instead of lowerCamelCase.
	UseProtoNames bool `yaml:"use_proto_names"`
	// EnumsAsInts writes enum values as numbers instead of names.
	EnumsAsInts bool `yaml:"enums_as_ints"`
	// Multiline indents the JSON.
	Multiline bool `yaml:"multiline"`
}

// Validate checks the block's structure; errors carry key paths relative
// to it.
func (c *Config) Validate() error {
	var errs []error
	if c.Descriptor == "" && len(c.DescriptorSet) == 0 {
		errs = append(errs, config.Fieldf("descriptor", "missing: expected the path of a protobuf descriptor set (protoc --include_imports --descriptor_set_out=FILE)"))
	}
	if len(c.Services) == 0 {
		errs = append(errs, config.Fieldf("services", "missing: expected at least one fully qualified service such as pkg.Service"))
	}
	seen := map[string]bool{}
	for i, s := range c.Services {
		if !protoreflect.FullName(s).IsValid() {
			errs = append(errs, config.Fieldf(fmt.Sprintf("services[%d]", i), "%q is not a fully qualified protobuf name (pkg.Service)", s))
		} else if seen[s] {
			errs = append(errs, config.Fieldf(fmt.Sprintf("services[%d]", i), "duplicate service %q", s))
		}
		seen[s] = true
	}
	for _, f := range []struct {
		key string
		v   int64
	}{{"max_body", int64(c.MaxBody)}, {"max_response", int64(c.MaxResponse)}, {"max_depth", int64(c.MaxDepth)}} {
		if f.v < 0 {
			errs = append(errs, config.Fieldf(f.key, "negative value %d", f.v))
		}
	}
	return errors.Join(errs...)
}

// Transcoder is a loaded grpc_json block. It is safe for concurrent use.
type Transcoder struct {
	cfg     Config
	rules   []*rule
	types   *dynamicpb.Types
	in      protojson.UnmarshalOptions
	out     protojson.MarshalOptions
	maxBody int64
	maxResp int64
	stats   Stats
}

// Stats counts a transcoder's requests.
type Stats struct {
	// Calls are requests forwarded as gRPC calls.
	Calls atomic.Uint64
	// Refused are requests answered without a call (no method, bad JSON,
	// too large, ...).
	Refused atomic.Uint64
	// Failed are calls that ended with a gRPC status other than OK or
	// an answer that was not gRPC.
	Failed atomic.Uint64
}

// Stats returns the transcoder's counters.
func (t *Transcoder) Stats() *Stats { return &t.stats }

// rule maps one HTTP method and path template to a gRPC method.
type rule struct {
	verb     string // HTTP method; "*" for any (custom "*")
	tmpl     *template
	method   protoreflect.MethodDescriptor
	grpcPath string
	body     string                       // "", "*" or a top-level field name
	bodyFD   protoreflect.FieldDescriptor // the body field
	respFD   protoreflect.FieldDescriptor // response_body field, or nil
	order    int
}

// Load reads the descriptor set and builds the routing table. Every
// problem is reported with its key.
func Load(cfg Config) (*Transcoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	raw := cfg.DescriptorSet
	if cfg.Descriptor != "" {
		f, err := os.Open(cfg.Descriptor)
		if err != nil {
			return nil, config.Fieldf("descriptor", "reading the descriptor set: %v", err)
		}
		raw, err = io.ReadAll(io.LimitReader(f, MaxDescriptor+1))
		f.Close()
		if err != nil {
			return nil, config.Fieldf("descriptor", "reading the descriptor set: %v", err)
		}
		if len(raw) > MaxDescriptor {
			return nil, config.Fieldf("descriptor", "%s is larger than %d bytes", cfg.Descriptor, MaxDescriptor)
		}
	}
	src := cfg.Descriptor
	if src == "" {
		src = "the embedded descriptor set"
	}
	var set descriptorpb.FileDescriptorSet
	// The google.api.http extension is registered by the annotations
	// package, so it is decoded into each method's options.
	if err := (proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(raw, &set); err != nil {
		return nil, config.Fieldf("descriptor", "%s is not a protobuf FileDescriptorSet: %v", src, err)
	}
	if len(set.File) == 0 {
		return nil, config.Fieldf("descriptor", "%s holds no files (expected protoc --descriptor_set_out output)", src)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, config.Fieldf("descriptor", "%s: %v (was it built with --include_imports?)", src, err)
	}
	t := &Transcoder{cfg: cfg, types: dynamicpb.NewTypes(files), maxBody: int64(cfg.MaxBody), maxResp: int64(cfg.MaxResponse)}
	if t.maxBody == 0 {
		t.maxBody = DefaultMaxBody
	}
	if t.maxResp == 0 {
		t.maxResp = DefaultMaxResponse
	}
	depth := cfg.MaxDepth
	if depth == 0 {
		depth = DefaultMaxDepth
	}
	t.in = protojson.UnmarshalOptions{DiscardUnknown: cfg.IgnoreUnknownFields, Resolver: t.types, RecursionLimit: depth}
	t.out = protojson.MarshalOptions{EmitUnpopulated: cfg.Print.EmitUnpopulated, UseProtoNames: cfg.Print.UseProtoNames,
		UseEnumNumbers: cfg.Print.EnumsAsInts, Multiline: cfg.Print.Multiline, Resolver: t.types}
	var errs []error
	for i, name := range cfg.Services {
		key := fmt.Sprintf("services[%d]", i)
		d, err := files.FindDescriptorByName(protoreflect.FullName(name))
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if err != nil || !ok {
			errs = append(errs, config.Fieldf(key, "service %q is not in %s (it has: %s)", name, src, strings.Join(serviceNames(files), ", ")))
			continue
		}
		for j := 0; j < sd.Methods().Len(); j++ {
			if err := t.addMethod(sd.Methods().Get(j)); err != nil {
				errs = append(errs, config.Fieldf(key, "%v", err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// The more literal segments, the more specific; then declaration order.
	sort.SliceStable(t.rules, func(i, j int) bool {
		li, lj := t.rules[i].tmpl.literals(), t.rules[j].tmpl.literals()
		if li != lj {
			return li > lj
		}
		return t.rules[i].order < t.rules[j].order
	})
	return t, nil
}

func serviceNames(files *protoregistry.Files) []string {
	var out []string
	files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		for i := 0; i < f.Services().Len(); i++ {
			out = append(out, string(f.Services().Get(i).FullName()))
		}
		return true
	})
	if len(out) == 0 {
		return []string{"no services"}
	}
	sort.Strings(out)
	return out
}

func (t *Transcoder) addMethod(m protoreflect.MethodDescriptor) error {
	grpcPath := "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
	var httpRule *annotations.HttpRule
	if opts, ok := m.Options().(*descriptorpb.MethodOptions); ok && opts != nil && proto.HasExtension(opts, annotations.E_Http) {
		httpRule, _ = proto.GetExtension(opts, annotations.E_Http).(*annotations.HttpRule)
	}
	if m.IsStreamingClient() {
		if httpRule != nil {
			return fmt.Errorf("method %s streams requests: only unary and server-streaming methods can be transcoded", m.FullName())
		}
		return nil // reachable only as gRPC
	}
	if httpRule != nil {
		rules := append([]*annotations.HttpRule{httpRule}, httpRule.GetAdditionalBindings()...)
		for _, hr := range rules {
			if err := t.addRule(m, grpcPath, hr); err != nil {
				return fmt.Errorf("method %s: %v", m.FullName(), err)
			}
		}
	}
	// Envoy's default: POST /pkg.Service/Method with the whole message as
	// the body.
	tm, err := parseTemplate(grpcPath)
	if err != nil {
		return fmt.Errorf("method %s: %v", m.FullName(), err)
	}
	t.rules = append(t.rules, &rule{verb: http.MethodPost, tmpl: tm, method: m, grpcPath: grpcPath, body: "*", order: len(t.rules)})
	return nil
}

func (t *Transcoder) addRule(m protoreflect.MethodDescriptor, grpcPath string, hr *annotations.HttpRule) error {
	var verb, path string
	switch p := hr.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		verb, path = http.MethodGet, p.Get
	case *annotations.HttpRule_Put:
		verb, path = http.MethodPut, p.Put
	case *annotations.HttpRule_Post:
		verb, path = http.MethodPost, p.Post
	case *annotations.HttpRule_Delete:
		verb, path = http.MethodDelete, p.Delete
	case *annotations.HttpRule_Patch:
		verb, path = http.MethodPatch, p.Patch
	case *annotations.HttpRule_Custom:
		verb, path = p.Custom.GetKind(), p.Custom.GetPath()
	default:
		return errors.New("google.api.http rule without a pattern (get, put, post, delete, patch or custom)")
	}
	tm, err := parseTemplate(path)
	if err != nil {
		return err
	}
	in := m.Input()
	r := &rule{verb: verb, tmpl: tm, method: m, grpcPath: grpcPath, body: hr.GetBody(), order: len(t.rules)}
	for _, v := range tm.vars {
		fd, err := resolveField(in, v.field)
		if err != nil {
			return fmt.Errorf("path %s: %v", path, err)
		}
		if fd.IsList() || fd.IsMap() || (fd.Kind() == protoreflect.MessageKind && !isWrapper(fd.Message())) {
			return fmt.Errorf("path %s: variable %s must name a scalar field", path, strings.Join(v.field, "."))
		}
	}
	if b := r.body; b != "" && b != "*" {
		fd := in.Fields().ByName(protoreflect.Name(b))
		if fd == nil {
			return fmt.Errorf("body %q names no field of %s", b, in.FullName())
		}
		r.bodyFD = fd
	}
	if rb := hr.GetResponseBody(); rb != "" {
		fd := m.Output().Fields().ByName(protoreflect.Name(rb))
		if fd == nil {
			return fmt.Errorf("response_body %q names no field of %s", rb, m.Output().FullName())
		}
		r.respFD = fd
	}
	if m.IsStreamingServer() && r.body != "" && r.body != "*" && r.bodyFD == nil {
		return fmt.Errorf("body %q names no field", r.body)
	}
	t.rules = append(t.rules, r)
	return nil
}

// resolveField walks a field path (proto or JSON names) from md.
func resolveField(md protoreflect.MessageDescriptor, path []string) (protoreflect.FieldDescriptor, error) {
	var fd protoreflect.FieldDescriptor
	for i, name := range path {
		if fd != nil {
			if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
				return nil, fmt.Errorf("field %s of %s is not a message", strings.Join(path[:i], "."), md.FullName())
			}
			md = fd.Message()
		}
		fd = md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			fd = md.Fields().ByJSONName(name)
		}
		if fd == nil {
			return nil, fmt.Errorf("%s has no field %q", md.FullName(), name)
		}
	}
	return fd, nil
}

// jsonDepth reports whether b's objects and arrays nest deeper than max
// (strings are skipped; b must be valid JSON).
func jsonDepth(b []byte, max int) bool {
	depth, inStr := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
			if depth > max {
				return true
			}
		case '}', ']':
			depth--
		}
	}
	return false
}

// loneSurrogate reports whether a string in b (valid JSON) holds a \u
// escape of a UTF-16 surrogate that is not half of a high-low pair.
func loneSurrogate(b []byte) bool {
	hex4 := func(i int) (rune, bool) { // the 4 hex digits after b[i:i+2] == `\u`
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		var r rune
		for _, c := range b[i+2 : i+6] {
			switch {
			case c >= '0' && c <= '9':
				r = r<<4 | rune(c-'0')
			case c >= 'a' && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case c >= 'A' && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	inStr := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !inStr {
			inStr = c == '"'
			continue
		}
		switch c {
		case '"':
			inStr = false
		case '\\':
			r, ok := hex4(i)
			if !ok {
				i++ // a one-character escape
				continue
			}
			i += 5
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return true
			case r >= 0xD800 && r <= 0xDBFF:
				lo, ok := hex4(i + 1)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return true
				}
				i += 6
			}
		}
	}
	return false
}

// decodeBody fills msg from the JSON body according to the rule.
func (t *Transcoder) decodeBody(r *rule, body []byte, msg *dynamicpb.Message) error {
	body = bytes.TrimSpace(body)
	if r.body == "" {
		if len(body) > 0 {
			return fmt.Errorf("%s %s takes no body", r.verb, r.tmpl.raw)
		}
		return nil
	}
	if len(body) == 0 {
		return nil // an empty body is the empty message
	}
	if !json.Valid(body) {
		return errors.New("body is not valid JSON")
	}
	if jsonDepth(body, t.in.RecursionLimit) {
		return fmt.Errorf("body nests deeper than %d levels", t.in.RecursionLimit)
	}
	if loneSurrogate(body) {
		// protojson refuses these too, but as "unexpected EOF".
		return errors.New(`body: a string holds a \u escape of an unpaired UTF-16 surrogate (\uD800-\uDFFF without its pair): not a character`)
	}
	if r.body == "*" {
		return t.in.Unmarshal(body, msg)
	}
	// One field: decode {"field": body} (body is one valid JSON value, so
	// it cannot add members of its own).
	wrapped := make([]byte, 0, len(body)+len(r.body)+5)
	wrapped = append(wrapped, `{"`...)
	wrapped = append(wrapped, r.body...)
	wrapped = append(wrapped, `":`...)
	wrapped = append(wrapped, body...)
	wrapped = append(wrapped, '}')
	tmp := dynamicpb.NewMessage(msg.Descriptor())
	if err := t.in.Unmarshal(wrapped, tmp); err != nil {
		return err
	}
	if tmp.Has(r.bodyFD) {
		// A body of null leaves the field unset: Get would hand back an
		// invalid (read-only) zero message, which Set refuses with a panic.
		msg.Set(r.bodyFD, tmp.Get(r.bodyFD))
	}
	return nil
}
