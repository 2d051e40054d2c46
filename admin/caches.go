package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/edge"
)

// CacheBackend is the optional part of a Backend that has edge caches;
// the cache endpoints answer 404 for a Backend without it.
type CacheBackend interface {
	// Caches returns each named cache's counters.
	Caches() []Cache
	// Purge purges entries of the named cache; it returns how many.
	Purge(cache string, p Purge) (int, error)
	// CacheEntries describes the named cache's entries for a URL.
	CacheEntries(cache, url string, limit int) ([]edge.EntryInfo, error)
	// Push publishes an object into the named cache as the response to
	// a GET of url.
	Push(cache, url string, obj edge.PushObject) error
	// CacheMaxObject is the named cache's largest object in bytes, so a
	// push larger than that is refused before its body is read.
	CacheMaxObject(cache string) (int64, error)
}

// pushHeaders are the request headers of a push that are stored with
// the object.
var pushHeaders = []string{"Content-Type", "Content-Language", "Content-Encoding", "Cache-Control", "Expires",
	"Etag", "Last-Modified", "Vary", "Surrogate-Key", "Cache-Tag", "Link", "Content-Disposition"}

// Cache is one named cache and its counters.
type Cache struct {
	Name  string     `json:"name"`
	Stats edge.Stats `json:"stats"`
}

// Purge says what to purge: exactly one of URL, Prefix and Tag.
type Purge struct {
	// URL is a target URI ("http://host/path?q" or "host/path?q").
	URL string `json:"url,omitempty"`
	// Prefix purges every URI that starts with it ("host/static/").
	Prefix string `json:"prefix,omitempty"`
	// Tag purges the entries whose response named it in Surrogate-Key
	// or Cache-Tag.
	Tag string `json:"tag,omitempty"`
	// Soft marks the entries stale instead of removing them: they are
	// revalidated before reuse, and stale-while-revalidate and
	// stale-if-error still apply.
	Soft bool `json:"soft,omitempty"`
}

// Mode is the purge mode.
func (p Purge) Mode() edge.PurgeMode {
	if p.Soft {
		return edge.Soft
	}
	return edge.Hard
}

// Validate checks that exactly one of URL, Prefix and Tag is set.
func (p Purge) Validate() error {
	n := 0
	for _, s := range []string{p.URL, p.Prefix, p.Tag} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return errors.New(`expected exactly one of "url", "prefix" and "tag"`)
	}
	return nil
}

// cacheRoutes adds the cache endpoints:
//
//	GET  /admin/caches                          each cache's counters
//	POST /admin/caches/{name}/purge             {"url"|"prefix"|"tag": ..., "soft": bool} → {"purged": N}
//	GET  /admin/caches/{name}/entries?url=URL   the entries stored for URL (all variants)
//	PUT  /admin/caches/{name}/objects?url=URL[&ttl=60s][&status=200]   push the body as URL's response
func cacheRoutes(mux *http.ServeMux, b Backend) {
	cb, ok := b.(CacheBackend)
	if !ok {
		return
	}
	mux.HandleFunc("GET /admin/caches", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, cb.Caches())
	})
	mux.HandleFunc("POST /admin/caches/{name}/purge", func(w http.ResponseWriter, r *http.Request) {
		var p Purge
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		err := dec.Decode(&p)
		if err == nil && dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
		if err == nil {
			err = p.Validate()
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf(`invalid purge: %v: expected {"url": "http://host/path"} or {"prefix": "host/dir/"} or {"tag": "t"}, with optional "soft": true`, err))
			return
		}
		n, err := cb.Purge(r.PathValue("name"), p)
		if err != nil {
			writeBackendError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"purged": n, "soft": p.Soft})
	})
	mux.HandleFunc("PUT /admin/caches/{name}/objects", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		target := q.Get("url")
		if target == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "missing url: expected ?url=http://host/path")
			return
		}
		var obj edge.PushObject
		if s := q.Get("ttl"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < time.Second {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("invalid ttl %q: expected a duration of at least 1s, e.g. 10m", s))
				return
			}
			obj.TTL = d
		}
		if s := q.Get("status"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 200 || n > 599 {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("invalid status %q: expected 200 to 599", s))
				return
			}
			obj.Status = n
		}
		max, err := cb.CacheMaxObject(r.PathValue("name"))
		if err != nil {
			writeBackendError(w, err)
			return
		}
		if r.ContentLength > max {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("object of %d bytes: the cache's max_object is %d", r.ContentLength, max))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, "too_large",
					fmt.Sprintf("object larger than the cache's max_object of %d bytes", max))
				return
			}
			writeError(w, http.StatusBadRequest, "bad_request", "reading the object: "+err.Error())
			return
		}
		obj.Body = body
		obj.Header = http.Header{}
		for _, k := range pushHeaders {
			if vs := r.Header.Values(k); len(vs) > 0 {
				obj.Header[k] = vs
			}
		}
		if err := cb.Push(r.PathValue("name"), target, obj); err != nil {
			writeBackendError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"pushed": target, "bytes": len(body)})
	})
	mux.HandleFunc("GET /admin/caches/{name}/entries", func(w http.ResponseWriter, r *http.Request) {
		u := r.URL.Query().Get("url")
		if u == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "missing url: expected ?url=http://host/path")
			return
		}
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 10000 {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("invalid limit %q: expected 1 to 10000", s))
				return
			}
			limit = n
		}
		entries, err := cb.CacheEntries(r.PathValue("name"), u, limit)
		if err != nil {
			writeBackendError(w, err)
			return
		}
		if entries == nil {
			entries = []edge.EntryInfo{}
		}
		writeJSON(w, http.StatusOK, entries)
	})
}
