// Package contract enforces OpenAPI 3.0/3.1 contracts at the gateway: a
// route that names a contract has every request checked against it (path,
// query, header and cookie parameters, the JSON body) before it reaches
// the upstream, and optionally every response, and answers a violation
// with 400 and an RFC 9457 problem naming the exact field.
//
// Validation is libopenapi-validator's (pb33f), which implements OpenAPI
// 3.1 with JSON Schema 2020-12; this package adds what a gateway needs
// around it: bounded body buffering, problem details, response checking
// without breaking streaming, and serving the document itself.
package contract

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	vconfig "github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/switchyard/switchyard/config"
)

// Defaults.
const (
	DefaultMaxBody = 1 << 20 // bytes of a request or response body validated
	// MaxDocument bounds the contract file read at load.
	MaxDocument = 16 << 20
)

// Response checking modes.
const (
	ResponsesOff     = "off"     // responses are not checked (default)
	ResponsesReport  = "report"  // violations are logged and counted; the client gets the response
	ResponsesEnforce = "enforce" // a violating response is replaced by 502
)

// Config is one named contract (the gateway's `contracts:` block).
//
//	contracts:
//	  hitch:
//	    file: contracts/hitch.yaml   # OpenAPI 3.0 or 3.1, YAML or JSON
//	    max_body: 1MiB
//	    responses: report            # off | report | enforce
//	    serve_at: /v1/openapi.yaml   # GET answered with the document itself
type Config struct {
	// File is the OpenAPI document (3.0.x or 3.1.x; YAML or JSON).
	// Required. Relative paths are relative to the working directory.
	File string `yaml:"file"`
	// Document is the document itself, for programs that embed it (Go
	// configs); File must then be empty.
	Document []byte `yaml:"-"`
	// MaxBody is the largest request body validated, in bytes; a larger
	// body on a route with this contract is refused with 413, since it
	// cannot be checked. Also the largest response body checked (larger
	// responses pass unchecked and are counted). Default 1 MiB.
	MaxBody config.ByteSize `yaml:"max_body"`
	// Responses says what happens to responses: "off" (default),
	// "report" (violations logged and counted, response sent) or
	// "enforce" (a violating response becomes 502). Checking a response
	// buffers it (up to MaxBody); only JSON responses are buffered.
	Responses string `yaml:"responses"`
	// ServeAt is a path on which GET answers with the document itself
	// (application/yaml or application/json, as the file is), for
	// clients and tools; "" serves nothing. It must be a path the
	// route matches.
	ServeAt string `yaml:"serve_at"`
}

// Validate checks the structure (not the document). Errors carry key
// paths relative to the block.
func (c *Config) Validate() error {
	var errs []error
	if c.File == "" && len(c.Document) == 0 {
		errs = append(errs, config.Fieldf("file", "missing: expected the path of an OpenAPI 3.0 or 3.1 document"))
	}
	if c.MaxBody < 0 {
		errs = append(errs, config.Fieldf("max_body", "negative size %d", c.MaxBody))
	}
	switch c.Responses {
	case "", ResponsesOff, ResponsesReport, ResponsesEnforce:
	default:
		errs = append(errs, config.Fieldf("responses", "unknown mode %q: expected off, report or enforce", c.Responses))
	}
	if c.ServeAt != "" && (!strings.HasPrefix(c.ServeAt, "/") || strings.ContainsAny(c.ServeAt, "?# ")) {
		errs = append(errs, config.Fieldf("serve_at", "%q: expected an absolute path such as /openapi.yaml", c.ServeAt))
	}
	return errors.Join(errs...)
}

// Contract is a loaded, checked OpenAPI document and its validator. It is
// safe for concurrent use.
type Contract struct {
	name      string
	cfg       Config
	doc       []byte
	mediaType string
	version   string
	v         validator.Validator
	maxBody   int64
	ops       map[string]map[string]bool // path template -> methods (for 405's Allow)
	// model is the document's model: a HEAD request is checked as the GET
	// of its path unless that path has its own HEAD (checkRequest), and a
	// body is refused on an operation without a requestBody.
	model *v3.Document
	// headOps: some path has an explicit HEAD operation.
	headOps bool
	stats   Stats
}

// Load reads and checks the document of cfg: it must parse, be OpenAPI
// 3.0 or 3.1, and be valid against the OpenAPI specification's schema.
// Every problem is reported, with the document's line where known.
func Load(name string, cfg Config) (*Contract, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	doc := cfg.Document
	src := "the embedded document"
	if cfg.File != "" {
		src = cfg.File
		f, err := os.Open(cfg.File)
		if err != nil {
			return nil, config.Fieldf("file", "reading the contract: %v", err)
		}
		doc, err = io.ReadAll(io.LimitReader(f, MaxDocument+1))
		f.Close()
		if err != nil {
			return nil, config.Fieldf("file", "reading the contract: %v", err)
		}
		if len(doc) > MaxDocument {
			return nil, config.Fieldf("file", "%s is larger than %d bytes", cfg.File, MaxDocument)
		}
	}
	c, err := build(name, cfg, doc)
	if err != nil {
		return nil, config.Fieldf("file", "%s: %v", src, err)
	}
	return c, nil
}

func build(name string, cfg Config, doc []byte) (c *Contract, err error) {
	defer func() { // the parser is third-party: a hostile document must not take the gateway down
		if p := recover(); p != nil {
			c, err = nil, fmt.Errorf("the OpenAPI parser failed on this document: %v", p)
		}
	}()
	trimmed := bytes.TrimSpace(doc)
	if len(trimmed) == 0 {
		return nil, errors.New("empty document: expected an OpenAPI 3.0 or 3.1 document")
	}
	d, err := libopenapi.NewDocument(doc)
	if err != nil {
		return nil, fmt.Errorf("not an OpenAPI document: %v", err)
	}
	info := d.GetSpecInfo()
	ver := d.GetVersion()
	if info == nil || !strings.HasPrefix(ver, "3.0") && !strings.HasPrefix(ver, "3.1") {
		return nil, fmt.Errorf("OpenAPI version %q: expected 3.0.x or 3.1.x (Swagger 2.0 is not supported: convert it)", ver)
	}
	v, errs := validator.NewValidator(d, vconfig.WithFormatAssertions(), vconfig.WithoutSecurityValidation())
	if len(errs) > 0 {
		return nil, fmt.Errorf("building the model: %v", errors.Join(errs...))
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		msgs := make([]string, 0, len(verrs))
		for _, e := range verrs {
			msgs = append(msgs, describeDocError(e))
		}
		sort.Strings(msgs)
		if len(msgs) > 10 {
			msgs = append(msgs[:10], fmt.Sprintf("... and %d more", len(msgs)-10))
		}
		return nil, fmt.Errorf("not a valid OpenAPI %s document:\n  %s", ver, strings.Join(msgs, "\n  "))
	}
	c = &Contract{name: name, cfg: cfg, doc: doc, version: ver, v: v, ops: map[string]map[string]bool{}}
	c.mediaType = "application/yaml"
	if trimmed[0] == '{' {
		c.mediaType = "application/json"
	}
	c.maxBody = int64(cfg.MaxBody)
	if c.maxBody == 0 {
		c.maxBody = DefaultMaxBody
	}
	m, _ := d.BuildV3Model()
	if m != nil {
		c.model = &m.Model
	}
	if m != nil && m.Model.Paths != nil && m.Model.Paths.PathItems != nil {
		for p, item := range m.Model.Paths.PathItems.FromOldest() {
			methods := map[string]bool{}
			for method := range item.GetOperations().FromOldest() {
				methods[strings.ToUpper(method)] = true
			}
			c.ops[p] = methods
			if methods["HEAD"] {
				c.headOps = true
			}
		}
	}
	return c, nil
}

func describeDocError(e *verrors.ValidationError) string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Reason != "" && e.Reason != e.Message {
		b.WriteString(": " + e.Reason)
	}
	for i, f := range e.SchemaValidationErrors {
		if i == 3 {
			fmt.Fprintf(&b, "; ... %d more", len(e.SchemaValidationErrors)-3)
			break
		}
		loc := f.FieldPath
		if loc == "" {
			loc = f.KeywordLocation
		}
		if f.Line > 0 {
			fmt.Fprintf(&b, "; line %d: %s (%s)", f.Line, f.Reason, loc)
		} else {
			fmt.Fprintf(&b, "; %s (%s)", f.Reason, loc)
		}
	}
	return b.String()
}

// Name returns the contract's name in the config.
func (c *Contract) Name() string { return c.name }

// Version returns the document's OpenAPI version ("3.1.0").
func (c *Contract) Version() string { return c.version }

// Document returns the document as loaded and its media type.
func (c *Contract) Document() ([]byte, string) { return c.doc, c.mediaType }
