package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// closedURL returns an http URL on a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/"
}

// TestLoadExitCodes runs `switchyard load` against real loopback servers:
// 0 when all is well, 99 when the SLO is violated, 1 when every request
// failed or the generator could not apply the load.
func TestLoadExitCodes(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer ok.Close()
	var n atomic.Int64
	half := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.WriteHeader(503)
		}
	}))
	defer half.Close()
	allFail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer allFail.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
	}))
	defer slow.Close()
	refused := closedURL(t)

	// --max-lag 1s: a busy machine's scheduling delays must not make these
	// runs count as ones the generator could not keep up with.
	base := []string{"load", "--rate", "50", "--duration", "200ms", "--timeout", "2s", "--connections", "4"}
	lenient := []string{"--max-lag", "1s"}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"ok", append([]string{"--slo", "errors<1%", ok.URL}, lenient...), 0, ""},
		{"ok without slo", append([]string{ok.URL}, lenient...), 0, ""},
		{"slo violated", append([]string{"--slo", "errors<1%", half.URL}, lenient...), 99, "SLO violated: errors<1%: measured 50.000%"},
		{"all failed (status)", append([]string{allFail.URL}, lenient...), 1, "every request failed (10 of 10: http_5xx=10; http_5xx: HTTP 500 Internal Server Error)"},
		{"all failed with slo", append([]string{"--slo", "errors<1%", allFail.URL}, lenient...), 1, "every request failed"},
		{"all refused", append([]string{refused}, lenient...), 1, "connection refused"},
		{"generator could not keep up", []string{"--connections", "1", "--max-lag", "50ms", slow.URL}, 1, "did not keep the offered rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append(append([]string{}, base...), tc.args...), &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and stderr ~%q\nstdout: %s", code, errb.String(), tc.code, tc.stderr, out.String())
			}
		})
	}
}

// TestLoadBinaryExit99 runs the real process: a violated SLO is exit status 99.
func TestLoadBinaryExit99(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("x") == "" {
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	cmd := exec.Command(os.Args[0], "load", "--rate", "40", "--duration", "100ms", "-c", "2",
		"--slo", "availability>=99%", srv.URL+"/?x=1", srv.URL+"/")
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 99 {
		t.Fatalf("exit: %v; want status 99\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "VIOLATED") {
		t.Errorf("summary does not say VIOLATED: %s", out.String())
	}
}

// TestLoadUsageErrors: bad and conflicting flags are usage errors (exit 2)
// with a message that says what to do.
func TestLoadUsageErrors(t *testing.T) {
	u := "http://127.0.0.1:1/"
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"--rate", "10", "--duration", "10", u}, "did you mean 10s?"},
		{[]string{"--rate", "10", "--timeout", "2.5", u}, "did you mean 2.5s?"},
		{[]string{"--rate", "10", "--max-lag", "5", u}, "did you mean 5ms?"},
		{[]string{"--ramp", "10:20:5", "--step", "3", u}, "did you mean 3s?"},
		{[]string{"--rate", "10", "--interval", "1 s", u}, "did you mean 1s?"},
		{[]string{"--rate", "10", "--duration", "fast", u}, "like 500ms, 30s or 2m"},
		{[]string{"--rate", "10", "--slo", "p99<100", u}, "did you mean 100ms?"},
		{[]string{"--rate", "10", "--ramp", "10:20:5", u}, "--rate and --ramp"},
		{[]string{"--ramp", "10:20:5", "--duration", "5s", u}, "--duration"},
		{[]string{"--rate", "10", "--step", "5s", u}, "--step"},
		{[]string{"--rate", "10", "-c", "5", "--connections", "6", u}, "-c"},
		{[]string{"--rate", "10", "--method", "HEAD", "--body", "x", u}, "HEAD"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"load"}, tc.args...), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("load %v: exit %d stderr %q; want 2 and ~%q", tc.args, code, errb.String(), tc.stderr)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"version"}, 0, "go1.", ""},
		{[]string{"--version"}, 0, "commit ", ""},
		{[]string{"-version"}, 0, "switchyard ", ""},
		{[]string{"help"}, 0, "Commands:", ""},
		{[]string{"-h"}, 0, "Commands:", ""},
		{[]string{"--frobnicate"}, 2, "", `unknown command "--frobnicate"`},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("switchyard %v: exit %d stdout %q stderr %q; want exit %d, stdout ~%q, stderr ~%q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
		}
	}
}
