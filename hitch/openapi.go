package hitch

import (
	"bytes"
	_ "embed"
)

// openapi is Hitch's public API as an OpenAPI 3.1 document: every route
// `hitch up` puts on its gateway but the event streams and the web app.
//
//go:embed openapi.yaml
var openapi []byte

// OpenAPIPath is where `hitch up`'s gateway serves the document.
const OpenAPIPath = "/v1/openapi.yaml"

// OpenAPI returns Hitch's OpenAPI 3.1 document (YAML), a copy the caller
// may keep. `hitch up` enforces it at its gateway (the contract "hitch")
// and serves it at OpenAPIPath.
func OpenAPI() []byte { return bytes.Clone(openapi) }
