package main

import (
	"net/http"
	"os"
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
