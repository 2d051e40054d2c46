package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// adminTokenEnv names the environment variable the CLI commands that talk
// to an admin API (edge, rollout, ...) take a bearer token from, for
// admin listeners with admin_auth. An environment variable rather than a
// flag keeps the token out of the process list and shell history.
const adminTokenEnv = "SWITCHYARD_ADMIN_TOKEN"

// withAdminToken sets req's Authorization from $SWITCHYARD_ADMIN_TOKEN
// when it is set.
func withAdminToken(req *http.Request) *http.Request {
	if tok := os.Getenv(adminTokenEnv); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req
}

// adminBase turns an --admin value into the admin API's base URL: HOST:PORT
// (as the gateway config's admin: key says it) or a URL as curl takes it
// (http:// or https://), without a trailing slash. flag names the flag in
// the error, which says what was expected.
func adminBase(flag, s string) (string, error) {
	base := strings.TrimRight(strings.TrimSpace(s), "/")
	if base == "" {
		return "", fmt.Errorf("%s is required: expected the gateway's admin address, HOST:PORT (as 127.0.0.1:9901)", flag)
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	switch {
	case err != nil:
		return "", fmt.Errorf("invalid %s %q: %v: expected HOST:PORT or http(s)://HOST:PORT", flag, s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("invalid %s %q: scheme %q: expected HOST:PORT or http(s)://HOST:PORT", flag, s, u.Scheme)
	case u.Host == "":
		return "", fmt.Errorf("invalid %s %q: no host: expected HOST:PORT or http(s)://HOST:PORT", flag, s)
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("invalid %s %q: a query or fragment: expected HOST:PORT or http(s)://HOST:PORT", flag, s)
	}
	return base, nil
}
