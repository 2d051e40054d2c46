// Package compose answers one client request with several upstream calls
// (API composition, scatter-gather): calls without dependencies run in
// parallel, a call may wait for earlier ones and use fields of their JSON
// responses, each has its own timeout, and the JSON bodies are merged
// under the calls' names. Optional calls that fail leave a partial result
// with a clear marker instead of failing the request.
package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Call is one upstream call of an aggregate.
type Call struct {
	// Name is the key of this call's result in the merged body. Required,
	// unique; "_partial" and "_errors" are reserved.
	Name string `yaml:"name"`
	// Upstream is the pool the call goes to. Required.
	Upstream string `yaml:"upstream"`
	// Method is the HTTP method. Default GET.
	Method string `yaml:"method"`
	// Path is the request path and query, a template: {query.NAME} and
	// {header.NAME} take values from the client request, {CALL.FIELD.SUB}
	// from the JSON response of an earlier call (which must be listed in
	// After). Values are escaped for their place in the URL.
	Path string `yaml:"path"`
	// Timeout bounds this call. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// Optional calls may fail (error, timeout or non-2xx): the response is
	// then partial. A required call failing fails the request (502).
	Optional bool `yaml:"optional"`
	// After lists calls that must finish first (sequential composition).
	After []string `yaml:"after"`
}

// Config is an aggregate route.
type Config struct {
	// Calls to make. At least one.
	Calls []Call `yaml:"calls"`
}

var placeholder = regexp.MustCompile(`\{([^{}]+)\}`)

// Validate reports every problem: names, dependencies (unknown, cyclic or
// not declared for a template reference), methods and templates.
func (c Config) Validate() error {
	var errs []error
	if len(c.Calls) == 0 {
		errs = append(errs, errors.New("calls: expected at least one call"))
	}
	names := map[string]int{}
	for i, call := range c.Calls {
		switch {
		case call.Name == "":
			errs = append(errs, fmt.Errorf("calls[%d].name: missing", i))
		case call.Name == "_partial" || call.Name == "_errors":
			errs = append(errs, fmt.Errorf("calls[%d].name: %q is reserved", i, call.Name))
		case names[call.Name] > 0:
			errs = append(errs, fmt.Errorf("calls[%d].name: duplicate %q", i, call.Name))
		}
		names[call.Name] = i + 1
		if call.Upstream == "" {
			errs = append(errs, fmt.Errorf("calls[%d].upstream: missing", i))
		}
		if !strings.HasPrefix(call.Path, "/") {
			errs = append(errs, fmt.Errorf("calls[%d].path: %q must start with /", i, call.Path))
		}
		if call.Timeout < 0 {
			errs = append(errs, fmt.Errorf("calls[%d].timeout: negative", i))
		}
	}
	for i, call := range c.Calls {
		for _, dep := range call.After {
			if names[dep] == 0 {
				errs = append(errs, fmt.Errorf("calls[%d].after: unknown call %q", i, dep))
			}
		}
		for _, m := range placeholder.FindAllStringSubmatch(call.Path, -1) {
			src, _, _ := strings.Cut(m[1], ".")
			switch {
			case src == "query" || src == "header":
			case names[src] == 0:
				errs = append(errs, fmt.Errorf("calls[%d].path: {%s}: expected {query.NAME}, {header.NAME} or {CALL.FIELD}", i, m[1]))
			case !contains(call.After, src):
				errs = append(errs, fmt.Errorf("calls[%d].path: {%s} uses call %q, which must be listed in after", i, m[1], src))
			}
		}
	}
	if len(errs) == 0 && hasCycle(c.Calls) {
		errs = append(errs, errors.New("calls: the after dependencies form a cycle"))
	}
	return errors.Join(errs...)
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

func hasCycle(calls []Call) bool {
	deps := map[string][]string{}
	for _, c := range calls {
		deps[c.Name] = c.After
	}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) bool
	visit = func(n string) bool {
		switch state[n] {
		case 1:
			return true
		case 2:
			return false
		}
		state[n] = 1
		for _, d := range deps[n] {
			if visit(d) {
				return true
			}
		}
		state[n] = 2
		return false
	}
	for _, c := range calls {
		if visit(c.Name) {
			return true
		}
	}
	return false
}

// Doer sends one call to an upstream pool (with the gateway's balancing,
// breakers and retries). The request carries the call's context.
type Doer func(upstream string, req *http.Request) (*http.Response, error)

// ErrorWriter answers the client when a required call failed.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, status int, code, msg string)

// Aggregator serves an aggregate route. Safe for concurrent use.
type Aggregator struct {
	calls   []Call
	do      Doer
	fail    ErrorWriter
	maxBody int64
}

// New validates cfg and returns an aggregator sending calls through do.
func New(cfg Config, do Doer, fail ErrorWriter) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	calls := make([]Call, len(cfg.Calls))
	copy(calls, cfg.Calls)
	for i := range calls {
		if calls[i].Method == "" {
			calls[i].Method = http.MethodGet
		}
		if calls[i].Timeout == 0 {
			calls[i].Timeout = 2 * time.Second
		}
	}
	return &Aggregator{calls: calls, do: do, fail: fail, maxBody: 4 << 20}, nil
}

// result of one call.
type result struct {
	body json.RawMessage
	err  error
	done chan struct{}
}

// ServeHTTP runs the calls and writes the merged JSON.
func (a *Aggregator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	results := make(map[string]*result, len(a.calls))
	for _, c := range a.calls {
		results[c.Name] = &result{done: make(chan struct{})}
	}
	var wg sync.WaitGroup
	for _, c := range a.calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := results[c.Name]
			defer close(res.done)
			for _, dep := range c.After {
				d := results[dep]
				select {
				case <-d.done:
				case <-r.Context().Done():
					res.err = r.Context().Err()
					return
				}
				if d.err != nil {
					res.err = fmt.Errorf("dependency %q failed", dep)
					return
				}
			}
			res.body, res.err = a.call(r, c, results)
		}()
	}
	wg.Wait()

	out := make(map[string]json.RawMessage, len(a.calls)+2)
	failures := map[string]string{}
	for _, c := range a.calls {
		res := results[c.Name]
		if res.err != nil {
			var ce *ClientValueError
			if errors.As(res.err, &ce) {
				a.fail(w, r, http.StatusBadRequest, "bad_request", fmt.Sprintf("call %q: %v", c.Name, ce))
				return
			}
			if !c.Optional {
				a.fail(w, r, http.StatusBadGateway, "aggregate_failed", fmt.Sprintf("required call %q failed: %v", c.Name, res.err))
				return
			}
			failures[c.Name] = res.err.Error()
			out[c.Name] = json.RawMessage("null")
			continue
		}
		out[c.Name] = res.body
	}
	if len(failures) > 0 {
		out["_partial"] = json.RawMessage("true")
		errJSON, _ := json.Marshal(failures)
		out["_errors"] = errJSON
		w.Header().Set("X-Partial-Response", "1")
	}
	body, err := json.Marshal(out)
	if err != nil {
		a.fail(w, r, http.StatusBadGateway, "aggregate_failed", "merging responses: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// call performs one call; its body is returned as JSON (a non-JSON body
// becomes a JSON string).
func (a *Aggregator) call(r *http.Request, c Call, results map[string]*result) (json.RawMessage, error) {
	target, err := expand(c.Path, r, results)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.Method, "http://"+c.Upstream+target, nil)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.Host = r.Host
	for _, h := range []string{"Authorization", "X-Request-Id", "Traceparent", "Accept-Language", "X-Consumer", "X-Consumer-Tier", "X-Scopes"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.do(c.Upstream, req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("timed out after %s", c.Timeout)
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, a.maxBody+1))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("timed out after %s", c.Timeout)
		}
		return nil, fmt.Errorf("reading response: %w", err)
	}
	if int64(len(body)) > a.maxBody {
		return nil, fmt.Errorf("response larger than %d bytes", a.maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	if json.Valid(body) && len(bytes.TrimSpace(body)) > 0 {
		return body, nil
	}
	s, _ := json.Marshal(string(body))
	return s, nil
}

// ClientValueError is a value from the client's request (query or header)
// that cannot go into a call's path: the client's 400, not a failed call.
type ClientValueError struct{ Msg string }

func (e *ClientValueError) Error() string { return e.Msg }

// expand fills a path template. A path segment that placeholders fill
// must not come out empty, "." or "..": the upstream would resolve it
// (/users/{query.uid}/profile with uid=.. is /profile there).
func expand(tmpl string, r *http.Request, results map[string]*result) (string, error) {
	var firstErr error
	path, query, hasQuery := strings.Cut(tmpl, "?")
	fill := func(s string, esc func(string) string) string {
		return placeholder.ReplaceAllStringFunc(s, func(m string) string {
			ref := m[1 : len(m)-1]
			src, field, _ := strings.Cut(ref, ".")
			var v string
			switch src {
			case "query":
				v = r.URL.Query().Get(field)
			case "header":
				v = r.Header.Get(field)
			default:
				var ok bool
				v, ok = lookup(results[src].body, field)
				if !ok && firstErr == nil {
					firstErr = fmt.Errorf("field %q not found in the response of %q", field, src)
				}
			}
			return esc(v)
		})
	}
	segs := pathSegments(path)
	for i, seg := range segs {
		out := fill(seg, url.PathEscape)
		if out != seg && (out == "" || out == "." || out == "..") && firstErr == nil {
			msg := fmt.Sprintf("path segment %q would be %q", seg, out)
			if strings.Contains(seg, "{query.") || strings.Contains(seg, "{header.") {
				firstErr = &ClientValueError{Msg: "a request value cannot be used in the call's path: " + msg}
			} else {
				firstErr = errors.New(msg)
			}
		}
		segs[i] = out
	}
	out := strings.Join(segs, "/")
	if hasQuery {
		out += "?" + fill(query, url.QueryEscape)
	}
	return out, firstErr
}

// pathSegments splits a path template at the slashes outside placeholders.
func pathSegments(path string) []string {
	var segs []string
	depth, start := 0, 0
	for i := 0; i < len(path); i++ {
		switch path[i] {
		case '{':
			depth++
		case '}':
			depth = max(depth-1, 0)
		case '/':
			if depth == 0 {
				segs = append(segs, path[start:i])
				start = i + 1
			}
		}
	}
	return append(segs, path[start:])
}

// lookup reads a dotted path from a JSON document as a string.
func lookup(doc json.RawMessage, path string) (string, bool) {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return "", false
	}
	if path != "" {
		for _, k := range strings.Split(path, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				return "", false
			}
			if v, ok = m[k]; !ok {
				return "", false
			}
		}
	}
	switch x := v.(type) {
	case string:
		return x, true
	case float64, bool:
		b, _ := json.Marshal(x)
		return string(b), true
	}
	return "", false
}
