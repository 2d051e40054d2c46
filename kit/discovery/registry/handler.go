package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/httpx"
	"github.com/switchyard/switchyard/kit/discovery"
)

// Long-poll bounds of GET /v1/services/{service}?index=N&wait=D.
const (
	DefaultWait = time.Minute
	MaxWait     = 10 * time.Minute
)

// ListMax is the largest page of GET /v1/services, and the page a request
// without ?limit= gets (as many as the listing returned before it had
// pages); more services follow by the answer's Link rel="next".
const ListMax = 1000

// IndexHeader carries the service's index on every service answer.
const IndexHeader = "X-Switchyard-Index"

// LeaseHeader carries an instance's lease (the "lease" of its
// registration's answer) on its heartbeats, state changes,
// deregistration and re-registrations.
const LeaseHeader = "X-Switchyard-Lease"

// Handler serves the registry's HTTP/JSON API:
//
//	PUT    /v1/services/{service}/instances/{id}            register (body: discovery.Registration; answer carries "lease")
//	PUT    /v1/services/{service}/instances/{id}/heartbeat  renew the TTL (404: register again)
//	PUT    /v1/services/{service}/instances/{id}/state      {"state":"draining"|"up"}
//	DELETE /v1/services/{service}/instances/{id}            deregister
//	GET    /v1/services/{service}[?index=N[&wait=30s]]      instances; with index, block until it changes
//	GET    /v1/services[?limit=N&cursor=C]                  services and counts, by name, in pages (Link rel="next", ETag)
//	GET    /healthz                                         200 while the registry is open
//
// A registration's answer carries a lease (discovery.Instance.Lease).
// While the instance lives, its heartbeats, state changes,
// deregistration and re-registrations must send it in LeaseHeader: a
// request without it, or with another, is 409 lease_mismatch, so a
// holder of the service's registry token cannot replace or remove
// another registrant's instance. Once the instance expired (or was
// deregistered) its id is free and the next registration gets a new
// lease.
//
// Every error is an RFC 9457 problem details document
// (application/problem+json: type, title, status, detail, and the
// extension members code and error), as the broker and the gateway's
// admin API answer theirs.
//
// Request bodies are capped at discovery.MaxBody bytes and decoded
// strictly (unknown fields are errors).
func Handler(r *Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/services/{service}/instances/{id}", func(w http.ResponseWriter, req *http.Request) {
		reg, err := decodeRegistration(http.MaxBytesReader(w, req.Body, discovery.MaxBody))
		if err != nil {
			writeErr(w, req, err)
			return
		}
		service, id := req.PathValue("service"), req.PathValue("id")
		if reg.Service == "" {
			reg.Service = service
		}
		if reg.ID == "" {
			reg.ID = id
		}
		if reg.Service != service || reg.ID != id {
			writeErr(w, req, fmt.Errorf("%w: body names service %q instance %q, path %q %q", ErrInvalid, clip(reg.Service), clip(reg.ID), clip(service), clip(id)))
			return
		}
		in, err := r.RegisterLease(reg, leaseOf(req))
		if err != nil {
			writeErr(w, req, err)
			return
		}
		writeJSON(w, http.StatusOK, in)
	})
	mux.HandleFunc("PUT /v1/services/{service}/instances/{id}/heartbeat", func(w http.ResponseWriter, req *http.Request) {
		in, err := r.HeartbeatLease(req.PathValue("service"), req.PathValue("id"), leaseOf(req))
		if err != nil {
			writeErr(w, req, err)
			return
		}
		writeJSON(w, http.StatusOK, in)
	})
	mux.HandleFunc("PUT /v1/services/{service}/instances/{id}/state", func(w http.ResponseWriter, req *http.Request) {
		var sr discovery.StateRequest
		if err := decodeStrict(http.MaxBytesReader(w, req.Body, discovery.MaxBody), &sr); err != nil {
			writeErr(w, req, err)
			return
		}
		in, err := r.SetStateLease(req.PathValue("service"), req.PathValue("id"), sr.State, leaseOf(req))
		if err != nil {
			writeErr(w, req, err)
			return
		}
		writeJSON(w, http.StatusOK, in)
	})
	mux.HandleFunc("DELETE /v1/services/{service}/instances/{id}", func(w http.ResponseWriter, req *http.Request) {
		if err := r.DeregisterLease(req.PathValue("service"), req.PathValue("id"), leaseOf(req)); err != nil {
			writeErr(w, req, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/services/{service}", func(w http.ResponseWriter, req *http.Request) {
		name := req.PathValue("service")
		if err := discovery.ValidName(name); err != nil {
			writeErr(w, req, fmt.Errorf("%w: %w", ErrInvalid, err))
			return
		}
		index, wait, err := pollParams(req)
		if err != nil {
			writeErr(w, req, err)
			return
		}
		var snap discovery.ServiceSnapshot
		if wait == 0 {
			snap = r.Snapshot(name)
		} else {
			ctx, cancel := context.WithTimeout(req.Context(), wait)
			snap, err = r.Wait(ctx, name, index)
			cancel()
			if err != nil {
				writeErr(w, req, err)
				return
			}
		}
		w.Header().Set(IndexHeader, strconv.FormatUint(snap.Index, 10))
		writeJSON(w, http.StatusOK, snap)
	})
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, req *http.Request) {
		p, err := httpx.ParsePage(req, "service", ListMax, ListMax)
		if err != nil {
			writeErr(w, req, &httpx.Error{Status: http.StatusBadRequest, Code: "invalid", Msg: err.Error()})
			return
		}
		all := r.Services() // sorted by name, names unique
		start, end, next := httpx.PageRange(len(all), func(i int) string { return all[i].Name }, p)
		body, _ := json.Marshal(map[string]any{"services": all[start:end]})
		body = append(body, '\n')
		httpx.SetNextLink(w, req, "service", next, p.Limit)
		w.Header().Set("Cache-Control", "no-cache")
		if httpx.NotModified(w, req, httpx.ETag(body)) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		closed := r.closed
		r.mu.Unlock()
		if closed {
			writeErr(w, req, ErrClosed)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// Paths and methods the API does not serve get problem details too:
	// 404 not_found, or 405 method_not_allowed with Allow.
	return httpx.MuxProblems(mux, "registry", nil)
}

// pollParams reads ?index=N&wait=D. Without index there is no wait; with
// it, wait defaults to DefaultWait and is capped at MaxWait.
func pollParams(req *http.Request) (index uint64, wait time.Duration, err error) {
	q := req.URL.Query()
	is := q.Get("index")
	if is == "" {
		if q.Has("wait") {
			return 0, 0, fmt.Errorf("%w: wait without index: pass the index of the snapshot you hold", ErrInvalid)
		}
		return 0, 0, nil
	}
	index, err = strconv.ParseUint(is, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: index %q: expected a non-negative integer", ErrInvalid, clip(is))
	}
	wait = DefaultWait
	if ws := q.Get("wait"); ws != "" {
		wait, err = time.ParseDuration(ws)
		if err != nil || wait <= 0 {
			return 0, 0, fmt.Errorf("%w: wait %q: expected a positive duration such as 30s", ErrInvalid, clip(ws))
		}
		wait = min(wait, MaxWait)
	}
	return index, wait, nil
}

// decodeRegistration reads one registration from body (JSON, strictly).
func decodeRegistration(body io.Reader) (discovery.Registration, error) {
	var reg discovery.Registration
	if err := decodeStrict(body, &reg); err != nil {
		return discovery.Registration{}, err
	}
	return reg, nil
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func decodeStrict(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &httpx.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
				Msg: fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
		}
		return fmt.Errorf("%w: decoding JSON body: %w", ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: decoding JSON body: data after the JSON value", ErrInvalid)
	}
	rest, err := io.ReadAll(dec.Buffered())
	if err == nil && len(bytes.TrimSpace(rest)) > 0 {
		return fmt.Errorf("%w: decoding JSON body: data after the JSON value", ErrInvalid)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeProblem answers e as problem details (with Retry-After when e
// has one).
func writeProblem(w http.ResponseWriter, e *httpx.Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	httpx.WriteProblem(w, e.Status, e.Code, e.Msg)
}

func writeErr(w http.ResponseWriter, req *http.Request, err error) {
	var he *httpx.Error
	if errors.As(err, &he) {
		writeProblem(w, he)
		return
	}
	e := &httpx.Error{Status: http.StatusInternalServerError, Code: "internal", Msg: err.Error(), Err: err}
	switch {
	case errors.Is(err, ErrInvalid):
		e.Status, e.Code = http.StatusBadRequest, "invalid"
	case errors.Is(err, ErrLeaseMismatch):
		e.Status, e.Code = http.StatusConflict, "lease_mismatch"
	case errors.Is(err, ErrNotFound):
		e.Status, e.Code = http.StatusNotFound, "not_registered"
	case errors.Is(err, ErrFull):
		e.Status, e.Code = http.StatusInsufficientStorage, "registry_full"
	case errors.Is(err, ErrBusy):
		e.Status, e.Code, e.RetryAfter = http.StatusServiceUnavailable, "busy", time.Second
	case errors.Is(err, ErrClosed):
		e.Status, e.Code = http.StatusServiceUnavailable, "closed"
	}
	writeProblem(w, e)
}

// leaseOf returns the lease a request presents. A value with a NUL
// (AnyLease, the in-process bypass, is one) is no lease: net/http refuses
// such a header, but a server or proxy in front of the handler may pass
// it on.
func leaseOf(req *http.Request) string {
	v := req.Header.Get(LeaseHeader)
	if strings.IndexByte(v, 0) >= 0 {
		return ""
	}
	return v
}
