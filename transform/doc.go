// Package transform rewrites requests on their way to an upstream (headers,
// path, query), filters and edits upstream responses (headers, JSON field
// allow-lists), and limits request body sizes.
//
// YAML shape (per route), defaults in comments:
//
//	transform:
//	  request:
//	    headers:
//	      set: { X-Api-Version: "2" }          # replace all values
//	      add: { X-Gateway: switchyard }       # append a value
//	      remove: [Cookie]
//	      rename: { X-User: X-Consumer }       # moves every value
//	    path: { regex: "^/v1/rides/(\\d+)$", replace: "/rides/$1" }   # or
//	    # path: { prefix: /old, replace: /new }                       # segment boundary
//	    query:
//	      set: { format: json }
//	      remove: [debug]
//	      rename: { q: query }
//	  response:
//	    headers: { set: { Cache-Control: no-store }, remove: [Server] }
//	    json_allow: [id, status, driver.name, stops.city]   # default: no filtering
//	    max_body: 1048576                                   # bytes; larger JSON bodies → 502
//
// MaxBytes(n) limits request bodies; a route-level key such as
// `max_request_body: 10485760` (bytes) would configure it.
//
// Headers edits run remove, rename, set, add; query edits remove, rename,
// set; a request is transformed headers, path, query. Request transforms
// run as httpx.Middleware (before the route's strip_prefix); response
// transforms as a proxy response hook, whose error the proxy answers with
// 502 {"code": "response_transform"}.
//
// RequestTransform and ResponseTransform are immutable once built and safe
// for concurrent use.
package transform
