package admin

import (
	"bytes"
	_ "embed"
	"net/http"
	"strconv"
)

// openapi is the admin API as an OpenAPI 3.1 document.
//
//go:embed openapi.yaml
var openapi []byte

// PathOpenAPI is where the admin API serves its own document.
const PathOpenAPI = "/admin/openapi.yaml"

// OpenAPI returns the admin API's OpenAPI 3.1 document (YAML), a copy the
// caller may keep: every endpoint of Handler but /debug/pprof/, with the
// gateway's traces, SLOs and faults beside it on the admin listener.
func OpenAPI() []byte { return bytes.Clone(openapi) }

// openapiRoute serves the document at PathOpenAPI.
func openapiRoute(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathOpenAPI, func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/yaml")
		h.Set("Content-Length", strconv.Itoa(len(openapi)))
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(openapi)
	})
}
