package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch/sim"
	"github.com/switchyard/switchyard/tlsconf"
)

// TestHitchUpSecure runs `switchyard hitch up --secure` and checks every
// hop: the use cases pass over HTTPS with the operator's certificate, and
// plain HTTP, foreign certificates, anonymous registry and broker callers
// and a service reaching for another's queue are all refused.
func TestHitchUpSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole Hitch")
	}
	data := t.TempDir()
	cmd := exec.Command(os.Args[0], "hitch", "up", "--secure", "--data", data, "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--replicas", "1", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr, out syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	up := make(chan map[string]string, 1)
	go func() {
		urls := map[string]string{}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			f := strings.Fields(line)
			if len(f) >= 2 && strings.HasSuffix(f[0], ":") && urls[f[0]] == "" {
				urls[f[0]] = f[1]
			}
			if len(f) >= 1 && f[0] == "hitch" && urls["admin:"] != "" {
				up <- urls
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("hitch up stdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
		}
	})
	var urls map[string]string
	select {
	case urls = <-up:
	case err := <-exited:
		t.Fatalf("hitch up exited before it was up: %v", err)
	case <-time.After(120 * time.Second):
		t.Fatal("hitch up did not print its URLs within 120s")
	}
	gw, admin, reg, broker := urls["gateway:"], strings.TrimSuffix(urls["admin:"], "/admin/status"), strings.TrimSuffix(urls["registry:"], "/v1/services"), urls["broker:"]
	for _, u := range []string{gw, admin, reg, broker} {
		if !strings.HasPrefix(u, "https://") {
			t.Fatalf("not HTTPS: %q (urls %v)", u, urls)
		}
	}
	pki := filepath.Join(data, "pki")
	if st, err := os.Stat(filepath.Join(pki, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v %v", st, err)
	}
	as := func(name string) *http.Client {
		var cert, key string
		if name != "" {
			cert, key = filepath.Join(pki, name+".crt"), filepath.Join(pki, name+".key")
		}
		tf := tlsFlags{ca: filepath.Join(pki, "ca.crt"), cert: cert, key: key}
		if name == "" {
			cfg, err := tlsconf.ClientConfig(tf.ca, "", "")
			if err != nil {
				t.Fatal(err)
			}
			return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		}
		c, err := tf.client()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	operator := as("operator")

	// Every use case, over HTTPS, the declined payment through the card
	// processor's mTLS port.
	for _, r := range sim.Check(context.Background(), sim.CheckConfig{BaseURL: gw, HTTPClient: operator,
		Decline: declineVia(admin, operator), NoDriverWait: 90 * time.Second}) {
		if r.Err != nil {
			t.Errorf("use case %s: %v", r.Name, r.Err)
		} else if r.Skipped != "" {
			t.Errorf("use case %s skipped: %s", r.Name, r.Skipped)
		}
	}

	rides, err := processAddrWith(context.Background(), operator, admin, "rides")
	if err != nil {
		t.Fatal(err)
	}
	// Plain HTTP to a service port: answered only with the TLS server's
	// refusal, never by the service.
	if resp, err := http.Get("http://" + rides + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || !strings.Contains(string(b), "HTTPS") {
			t.Fatalf("plain HTTP to rides: %d %s", resp.StatusCode, b)
		}
	}
	// No client certificate, another service's (notifications may not
	// call rides), and another CA's: refused in the handshake.
	other := &tlsconf.LocalCA{Dir: t.TempDir()}
	if err := other.Open(); err != nil {
		t.Fatal(err)
	}
	ol, _ := other.Leaf("gateway") // the right name, the wrong CA
	foreignCfg, _ := tlsconf.ClientConfig(filepath.Join(pki, "ca.crt"), ol.Cert, ol.Key)
	foreign := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: foreignCfg}}
	for name, c := range map[string]*http.Client{"no certificate": as(""), "notifications": as("notifications"), "another CA": foreign} {
		if resp, err := c.Get("https://" + rides + "/healthz"); err == nil {
			resp.Body.Close()
			t.Errorf("%s reached rides: %d", name, resp.StatusCode)
		}
	}
	if resp, err := operator.Get("https://" + rides + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("operator to rides: %v", err)
	} else {
		resp.Body.Close()
	}

	call := func(c *http.Client, method, url, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// The broker: no credential, no publish or consume; a service's
	// certificate cannot take another service's queue or publish on
	// another's topic; its own queue it may read.
	anon := as("")
	if code := call(anon, "POST", broker+"/v1/queues/payments.rides/messages", `{"body":"x"}`); code != 401 {
		t.Errorf("anonymous publish: %d, want 401", code)
	}
	if code := call(anon, "POST", broker+"/v1/queues/payments.rides/receive", `{}`); code != 401 {
		t.Errorf("anonymous receive: %d, want 401", code)
	}
	if code := call(as("notifications"), "POST", broker+"/v1/queues/payments.rides/receive", `{}`); code != 403 {
		t.Errorf("notifications receiving payments' queue: %d, want 403", code)
	}
	if code := call(as("notifications"), "POST", broker+"/v1/topics/hitch.payments/messages", `{"body":"x"}`); code != 403 {
		t.Errorf("notifications publishing payments' topic: %d, want 403", code)
	}
	// The registry: no anonymous writes, none to another service.
	reg1 := `{"address":"127.0.0.1:1","ttl":"5s"}`
	if code := call(anon, "PUT", reg+"/v1/services/payments/instances/evil", reg1); code != 401 {
		t.Errorf("anonymous register: %d, want 401", code)
	}
	if code := call(as("notifications"), "PUT", reg+"/v1/services/payments/instances/evil", reg1); code != 403 {
		t.Errorf("notifications registering payments: %d, want 403", code)
	}
	if code := call(anon, "DELETE", reg+"/v1/services/rides/instances/rides-0", ""); code != 401 {
		t.Errorf("anonymous deregister: %d, want 401", code)
	}
	// The admin API: HTTPS, nothing without a credential, the token works.
	if code := call(anon, "GET", admin+"/admin/status", ""); code != 401 {
		t.Errorf("anonymous admin: %d, want 401", code)
	}
	tok, err := os.ReadFile(filepath.Join(pki, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", admin+"/admin/hitch/processes", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	if resp, err := anon.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin with the token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	_ = tls.VersionTLS12

	// hitch up's own broker user reads queues and nothing else: no
	// receive, no publish, no delete.
	gwc := as("gateway")
	if code := call(gwc, "GET", broker+"/v1/queues/payments.rides", ""); code != 200 {
		t.Errorf("gateway reading a queue's counts: %d, want 200", code)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/queues/payments.rides/receive", `{}`},
		{"POST", "/v1/topics/hitch.payments/messages", `{"body":"x"}`},
		{"DELETE", "/v1/queues/payments.rides", ""},
	} {
		if code := call(gwc, c.method, broker+c.path, c.body); code != 403 {
			t.Errorf("gateway %s %s: %d, want 403", c.method, c.path, code)
		}
	}

	// The dashboard shows the broker's queues (its client presents the
	// gateway certificate).
	dreq, _ := http.NewRequest("GET", admin+"/admin/dashboard/events", nil)
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer dcancel()
	dresp, err := operator.Do(dreq.WithContext(dctx))
	if err != nil {
		t.Fatal(err)
	}
	var snap struct {
		Brokers struct {
			Available bool `json:"available"`
			Items     []struct {
				Error  string `json:"error"`
				Queues []struct {
					Name string `json:"name"`
				} `json:"queues"`
			} `json:"items"`
		} `json:"brokers"`
	}
	sc := bufio.NewScanner(dresp.Body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if err := json.Unmarshal([]byte(data), &snap); err != nil {
				t.Fatalf("dashboard snapshot: %v", err)
			}
			break
		}
	}
	dresp.Body.Close()
	if !snap.Brokers.Available || len(snap.Brokers.Items) != 1 || snap.Brokers.Items[0].Error != "" || len(snap.Brokers.Items[0].Queues) == 0 {
		t.Errorf("dashboard brokers panel: %+v", snap.Brokers)
	}

	// The services' spans reached the trace receiver (HTTPS, mTLS).
	serviceRe := regexp.MustCompile(`"service":\s*"([a-z]+)"`)
	children := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(children) == 0 && time.Now().Before(deadline) {
		resp, err := operator.Get(admin + "/admin/traces?limit=20")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Traces []struct {
				ID string `json:"trace_id"`
			} `json:"traces"`
		}
		json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		for _, tr := range list.Traces {
			resp, err := operator.Get(admin + "/admin/traces/" + tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, m := range serviceRe.FindAllStringSubmatch(string(b), -1) {
				if m[1] != "gateway" {
					children[m[1]] = true
				}
			}
		}
		if len(children) == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(children) == 0 {
		t.Error("no span of a service reached the trace receiver")
	}
	if !strings.Contains(out.String(), "every process exports to https://") {
		t.Errorf("trace receiver not HTTPS in the banner")
	}
}
