package edge

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/net/http/httpguts"
)

// PushObject is an object published into a cache ahead of any request
// (a push CDN).
type PushObject struct {
	// Status is the stored status. Default 200.
	Status int
	// Header is stored as given (Content-Type, Cache-Control, ETag,
	// Surrogate-Key ...); Cache-Control decides freshness unless TTL is set.
	Header http.Header
	// Body is the object's bytes (at most the cache's max_object).
	Body []byte
	// TTL, when positive, is the freshness lifetime in this cache,
	// overriding the header's (as CDN-Cache-Control: max-age would).
	TTL time.Duration
}

// Push stores obj as the response to a GET of r's target: keyed as this
// route keys requests, with r's headers giving the key's header and
// cookie parts and the values of the fields obj's Vary names.
func (c *Cache) Push(r *http.Request, obj PushObject) error {
	if obj.Status == 0 {
		obj.Status = http.StatusOK
	}
	if obj.Status < 200 || obj.Status > 599 {
		return fmt.Errorf("pushing %s: invalid status %d", r.URL, obj.Status)
	}
	if int64(len(obj.Body)) > c.store.maxObject {
		return fmt.Errorf("pushing %s: %d bytes is larger than max_object (%d)", r.URL, len(obj.Body), c.store.maxObject)
	}
	hdr := obj.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	for k, vs := range hdr {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("pushing %s: invalid header name %q", r.URL, k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				// A CR or LF stored here would be written on every hit
				// (response splitting).
				return fmt.Errorf("pushing %s: header %s: invalid value %q", r.URL, k, v)
			}
		}
	}
	if obj.TTL > 0 {
		hdr.Set("Cdn-Cache-Control", "max-age="+strconv.FormatInt(int64(obj.TTL/time.Second), 10))
	}
	get := r.Clone(r.Context())
	get.Method = http.MethodGet
	now := time.Now()
	var kb [256]byte
	key := string(buildKey(kb[:0], c.key, get))
	p := c.prepare(get, key, obj.Status, hdr, now, now)
	if !p.storable || p.e.lifetime <= 0 {
		// Without a freshness lifetime a pushed object would be stale
		// from the start: served only as stale-if-error, while every
		// request goes to an origin that may not have it.
		return errors.New("pushing " + r.URL.String() + ": the object is not storable (give a ttl, or Cache-Control: max-age without no-store or private)")
	}
	c.setBody(p.e, bytes.Clone(obj.Body))
	if !c.store.insert(p.e) {
		return fmt.Errorf("pushing %s: the entry is larger than the memory bound", r.URL)
	}
	return nil
}
