package httpapi

import (
	"fmt"
	"net/http"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/access"
)

// rule is the permission a route needs on the resource its {name} names.
type rule struct {
	open bool        // anyone, even without a credential (/healthz)
	list bool        // a listing: shows only what the user may see
	see  bool        // any permission on the resource (its settings, counts, a message's state)
	all  bool        // perm on every name ("*"): /metrics
	perm access.Perm // otherwise: this permission
	kind string      // queue, topic or stream
}

// routeRules is the permission of every route; a route without one is
// refused when the server is built (see guard), so none can be added
// unchecked.
var routeRules = map[string]rule{
	"GET /healthz": {open: true},
	"GET /metrics": {all: true, perm: access.Manage},

	"GET /v1/queues":                                {list: true},
	"PUT /v1/queues/{name}":                         {perm: access.Manage, kind: access.Queue},
	"GET /v1/queues/{name}":                         {see: true, kind: access.Queue},
	"DELETE /v1/queues/{name}":                      {perm: access.Manage, kind: access.Queue},
	"POST /v1/queues/{name}/messages":               {perm: access.Publish, kind: access.Queue},
	"GET /v1/queues/{name}/messages/{id}":           {see: true, kind: access.Queue},
	"POST /v1/queues/{name}/receive":                {perm: access.Consume, kind: access.Queue},
	"POST /v1/queues/{name}/ack":                    {perm: access.Consume, kind: access.Queue},
	"POST /v1/queues/{name}/nack":                   {perm: access.Consume, kind: access.Queue},
	"POST /v1/queues/{name}/redrive":                {perm: access.Manage, kind: access.Queue},
	"GET /v1/topics":                                {list: true},
	"PUT /v1/topics/{name}":                         {perm: access.Manage, kind: access.Topic},
	"GET /v1/topics/{name}":                         {see: true, kind: access.Topic},
	"DELETE /v1/topics/{name}":                      {perm: access.Manage, kind: access.Topic},
	"POST /v1/topics/{name}/messages":               {perm: access.Publish, kind: access.Topic},
	"GET /v1/topics/{name}/events":                  {perm: access.Consume, kind: access.Topic},
	"PUT /v1/topics/{name}/queues/{queue}":          {perm: access.Manage, kind: access.Topic},
	"DELETE /v1/topics/{name}/queues/{queue}":       {perm: access.Manage, kind: access.Topic},
	"GET /v1/streams":                               {list: true},
	"PUT /v1/streams/{name}":                        {perm: access.Manage, kind: access.Stream},
	"GET /v1/streams/{name}":                        {see: true, kind: access.Stream},
	"DELETE /v1/streams/{name}":                     {perm: access.Manage, kind: access.Stream},
	"POST /v1/streams/{name}/messages":              {perm: access.Publish, kind: access.Stream},
	"GET /v1/streams/{name}/messages":               {perm: access.Consume, kind: access.Stream},
	"GET /v1/streams/{name}/groups/{group}/fetch":   {perm: access.Consume, kind: access.Stream},
	"POST /v1/streams/{name}/groups/{group}/fetch":  {perm: access.Consume, kind: access.Stream},
	"POST /v1/streams/{name}/groups/{group}/commit": {perm: access.Consume, kind: access.Stream},
}

type principalKey struct{}

// principal is the request's user; nil on an open broker (allowed all).
func principal(r *http.Request) *access.Principal {
	p, _ := r.Context().Value(principalKey{}).(*access.Principal)
	return p
}

// guard wraps a route's handler with its permission check.
func (s *Server) guard(pattern string, h http.HandlerFunc) http.HandlerFunc {
	ru, ok := routeRules[pattern]
	if !ok {
		panic(fmt.Sprintf("httpapi: route %q has no permission rule in routeRules", pattern))
	}
	if ru.open || ru.list || s.auth == nil {
		return h // listings filter themselves (visible)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		p := principal(r)
		var err error
		switch {
		case ru.all:
			err = p.CheckAll(ru.perm)
		case ru.see:
			if name := r.PathValue("name"); !p.Sees(ru.kind, name) {
				err = &broker.ForbiddenError{User: p.Name, Permission: "publish, consume or manage", Kind: ru.kind, Name: name}
			}
		default:
			err = p.Check(ru.perm, ru.kind, r.PathValue("name"))
		}
		if err != nil {
			fail(w, err)
			return
		}
		h(w, r)
	}
}

// visible keeps the names of kind the request's user may see (any
// permission on them).
func visible(r *http.Request, kind string, names []string) []string {
	p := principal(r)
	if p == nil {
		return names
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if p.Sees(kind, n) {
			out = append(out, n)
		}
	}
	return out
}
