package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// A --case that names no use case is an error listing the names: before,
// it ran nothing and exited 0, so a typo looked like a passing check.
func TestHitchCheckUnknownCase(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runHitchCheck(context.Background(), []string{"--url", "http://127.0.0.1:1", "--admin", "", "--case", "register and login", "--case", "registr"}, &out, &errOut)
	if err == nil {
		t.Fatalf("--case registr: no error (output %q)", out.String())
	}
	for _, want := range []string{`"registr"`, `"register and login"`, `"no driver"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("--case registr: %v, want it to mention %s", err, want)
		}
	}
	if out.Len() != 0 {
		t.Errorf("ran cases before refusing: %q", out.String())
	}
}

// hitch up takes host:port (--listen, --admin); the clients take URLs. A
// host:port given to them is refused naming the flag and the form wanted,
// not run into "first path segment in URL cannot contain colon" per case.
func TestHitchClientsWantURLs(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) error
		args []string
		flag string
	}{
		{"check --url", wrap(runHitchCheck), []string{"--url", "127.0.0.1:38080"}, "--url"},
		{"check --admin", wrap(runHitchCheck), []string{"--url", "http://127.0.0.1:1", "--admin", "127.0.0.1:39901"}, "--admin"},
		{"sim --url", wrap(runHitchSim), []string{"--url", "127.0.0.1:38080", "--duration", "1s"}, "--url"},
		{"bench --url", wrap(runHitchBench), []string{"--url", "localhost:8080"}, "--url"},
		{"check --url ftp", wrap(runHitchCheck), []string{"--url", "ftp://127.0.0.1:1"}, "--url"},
	} {
		var out, errOut bytes.Buffer
		err := tc.run(context.Background(), tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.flag) || !strings.Contains(err.Error(), "http://") {
			t.Errorf("%s: %v, want an error naming %s and the http://HOST:PORT form", tc.name, err, tc.flag)
		}
		if out.Len() != 0 {
			t.Errorf("%s: ran before refusing: %q", tc.name, out.String())
		}
	}
}

func wrap(f func(context.Context, []string, io.Writer, io.Writer) error) func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) error {
	return func(ctx context.Context, args []string, out, errOut *bytes.Buffer) error {
		return f(ctx, args, out, errOut)
	}
}
