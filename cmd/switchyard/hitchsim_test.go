package main

import (
	"bytes"
	"context"
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
