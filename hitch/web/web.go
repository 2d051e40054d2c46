package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Asset is one file the handler serves.
type asset struct {
	body        []byte
	contentType string
	etag        string
	immutable   bool // served under its hashed name
}

// Handler serves the app. Build it with New; safe for concurrent use.
type Handler struct {
	files map[string]*asset // by URL path
}

// New reads the embedded files once: index.html at "/" (and
// "/index.html") with an ETag and Cache-Control: no-cache, every other
// file at /assets/NAME.HASH.EXT (Cache-Control: public, max-age=1y,
// immutable) and, for old links, at /assets/NAME.EXT with an ETag and
// no-cache. index.html's references to /assets/NAME.EXT are rewritten to
// the hashed names, so a deploy changes the page (revalidated) and the
// page names new, never-stale assets.
func New() (*Handler, error) {
	h := &Handler{files: map[string]*asset{}}
	renames := map[string]string{}
	var index []byte
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		if name == "index.html" {
			index = b
			return nil
		}
		sum := sha256.Sum256(b)
		hash := hex.EncodeToString(sum[:6])
		ext := path.Ext(name)
		plain := "/assets/" + name
		hashed := "/assets/" + strings.TrimSuffix(name, ext) + "." + hash + ext
		ct := contentType(ext)
		h.files[plain] = &asset{body: b, contentType: ct, etag: `"` + hash + `"`}
		h.files[hashed] = &asset{body: b, contentType: ct, etag: `"` + hash + `"`, immutable: true}
		renames[plain] = hashed
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hitch/web: reading embedded files: %w", err)
	}
	if index == nil {
		return nil, fmt.Errorf("hitch/web: static/index.html is missing")
	}
	for plain, hashed := range renames {
		index = bytes.ReplaceAll(index, []byte(`"`+plain+`"`), []byte(`"`+hashed+`"`))
	}
	sum := sha256.Sum256(index)
	page := &asset{body: index, contentType: "text/html; charset=utf-8", etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	h.files["/"] = page
	h.files["/index.html"] = page
	return h, nil
}

// Paths lists the URL paths served (for tests and the gateway's routes).
func (h *Handler) Paths() []string {
	out := make([]string, 0, len(h.files))
	for p := range h.files {
		out = append(out, p)
	}
	return out
}

func contentType(ext string) string {
	switch ext {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".html":
		return "text/html; charset=utf-8"
	}
	return "application/octet-stream"
}

// ServeHTTP answers GET and HEAD for the app's files: 304 when
// If-None-Match names the current ETag, 404 for anything else, 405 for
// other methods.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, ok := h.files[r.URL.Path]
	if !ok {
		http.Error(w, "not found: "+r.URL.Path, http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, r.Method+" not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd := w.Header()
	hd.Set("ETag", a.etag)
	if a.immutable {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "public, no-cache")
	}
	hd.Set("Content-Type", a.contentType)
	hd.Set("X-Content-Type-Options", "nosniff")
	if a.contentType == "text/html; charset=utf-8" {
		// Everything the page loads is its own: no third-party origin,
		// no inline script.
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self' http: https: ws: wss:")
	}
	if etagMatch(r.Header.Get("If-None-Match"), a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// etagMatch reports whether an If-None-Match value names etag (weak
// comparison, RFC 9110 13.1.2) or is "*".
func etagMatch(header, etag string) bool {
	for v := range strings.SplitSeq(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == "*" || v == etag {
			return true
		}
	}
	return false
}
