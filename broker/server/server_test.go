package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"
)

// TestRunUsageErrors: bad options are a *UsageError, the missing data
// directory with the usage text.
func TestRunUsageErrors(t *testing.T) {
	for _, c := range []struct {
		o         Options
		want      string
		showUsage bool
	}{
		{Options{HTTP: "127.0.0.1:0"}, "--data is required (or data: in the config file)", true},
		{Options{Data: t.TempDir(), HTTP: "127.0.0.1:0", Fsync: "sometimes"}, "--fsync: ", false},
	} {
		err := Run(context.Background(), c.o, io.Discard, io.Discard)
		var uerr *UsageError
		if !errors.As(err, &uerr) || uerr.ShowUsage != c.showUsage || !regexp.MustCompile(regexp.QuoteMeta(c.want)).MatchString(err.Error()) {
			t.Errorf("Run(%+v) = %v, want a UsageError %q (usage %v)", c.o, err, c.want, c.showUsage)
		}
	}
}

// lineWriter hands each write to a channel.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) { w <- string(p); return len(p), nil }

// TestRunServesAndStops: Run serves the HTTP API on the address it prints
// and returns nil once its context ends.
func TestRunServesAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(lineWriter, 4)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{Data: t.TempDir(), HTTP: "127.0.0.1:0"}, out, io.Discard) }()
	var line string
	select {
	case line = <-out:
	case err := <-done:
		t.Fatalf("Run returned %v before listening", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no startup line")
	}
	m := regexp.MustCompile(`http=(\S+) native=off pprof=off`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("startup line %q", line)
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}
