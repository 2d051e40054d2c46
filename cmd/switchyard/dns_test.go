package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func TestDNSUsage(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("zones:\n  - origin: example.test.\n    soa: {ns: ns1.example.test.}\n    records: [\"@ NS ns1\"]\n    pools: [{name: app, sites: [nowhere]}]\n"), 0o644)
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"dns", "--help"}, 0, "--config", ""},
		{[]string{"dns"}, 2, "", "--config FILE is required"},
		{[]string{"dns", "--confg", "x"}, 2, "", "did you mean --config?"},
		{[]string{"dns", "--config", "x", "--log-level", "loud"}, 2, "", "--log-level"},
		{[]string{"dns", "--config", "/nonexistent.yaml"}, 1, "", "/nonexistent.yaml"},
		{[]string{"dns", "--check", "--config", bad}, 1, "", bad + ":5:33: zones[0].pools[0].sites[0]: \"nowhere\": no such site"},
		{[]string{"dsn"}, 2, "", `did you mean "dns"?`},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("switchyard %v: exit %d stdout %q stderr %q; want exit %d, stdout ~%q, stderr ~%q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
		}
	}
}

// TestBinaryDNS runs `switchyard dns` as a process, queries it over UDP
// and TCP, and stops it with SIGTERM.
func TestBinaryDNS(t *testing.T) {
	addr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "dns.yaml")
	os.WriteFile(cfg, []byte(`
zones:
  - origin: example.test.
    soa: {ns: ns1.example.test.}
    records: ["@ NS ns1", "ns1 A 192.0.2.53"]
`), 0o644)
	cmd := exec.Command(os.Args[0], "dns", "--config", cfg, "--listen", addr)
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "dns listening") {
				up <- true
			}
		}
		up <- false
	}()
	select {
	case ok := <-up:
		if !ok {
			t.Fatal("dns exited before listening")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dns not listening within 10s")
	}
	for _, nw := range []string{"udp", "tcp"} {
		m := new(mdns.Msg)
		m.SetQuestion("ns1.example.test.", mdns.TypeA)
		r, _, err := (&mdns.Client{Net: nw, Timeout: 2 * time.Second}).Exchange(m, addr)
		if err != nil || len(r.Answer) != 1 || !r.Authoritative {
			t.Fatalf("%s: %v %v", nw, r, err)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}
