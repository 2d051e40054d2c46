package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch/sim"
)

// chaosOnly skips the chaos tests unless SWITCHYARD_CHAOS=1: each runs a
// whole Hitch for two minutes while killing it, which needs the machine to
// itself and binaries built without the race detector (the children of a
// -race test binary are race-built, five to ten times slower, and their
// timings then measure the detector). .ci/run runs them that way, after the
// race suite: SWITCHYARD_CHAOS=1 go test -run 'TestHitch.*Kills' ./cmd/switchyard
func chaosOnly(t *testing.T) {
	t.Helper()
	if os.Getenv("SWITCHYARD_CHAOS") != "1" {
		t.Skip("a chaos test: SWITCHYARD_CHAOS=1 go test -run 'TestHitch.*Kills' -v ./cmd/switchyard (no -race; .ci/run does)")
	}
}

// startHitch runs `switchyard hitch up` (this test binary re-executed) on
// ephemeral ports until the test ends and returns the gateway and admin
// URLs.
func startHitch(t *testing.T, extra ...string) (gw, admin string) {
	t.Helper()
	args := append([]string{"hitch", "up", "--data", t.TempDir(), "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--replicas", "2", "--log-level", "warn"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SWITCHYARD_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out syncBuf
	urls := make(chan [2]string, 1)
	exited := make(chan error, 1)
	go func() {
		var g string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "gateway:" {
				g = f[1]
			}
			if len(f) >= 2 && f[0] == "admin:" {
				urls <- [2]string{g, strings.TrimSuffix(f[1], "/admin/status")}
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("hitch up stdout:\n%s\nstderr (last 8 KiB):\n%s", out.String(), tail(stderr.String(), 8<<10))
		}
	})
	select {
	case u := <-urls:
		return u[0], u[1]
	case err := <-exited:
		t.Fatalf("hitch up exited before it was up: %v\n%s", err, stderr.String())
	case <-time.After(90 * time.Second):
		t.Fatal("hitch up did not print its URLs within 90s")
	}
	return "", ""
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// killer SIGKILLs processes of hitch up, found by name in its process
// list, and counts the kills.
type killer struct {
	t     *testing.T
	admin string
	mu    sync.Mutex
	kills map[string]int
}

func (k *killer) kill(name string, replica int) bool {
	req, _ := http.NewRequest(http.MethodGet, k.admin+"/admin/hitch/processes", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var list struct{ Processes []hitchProcess }
	if json.NewDecoder(resp.Body).Decode(&list) != nil {
		return false
	}
	for _, p := range list.Processes {
		if p.Name == name && p.Replica == replica && p.PID > 0 && p.Health == "up" {
			if syscall.Kill(p.PID, syscall.SIGKILL) == nil {
				k.mu.Lock()
				k.kills[fmt.Sprintf("%s-%d", name, replica)]++
				k.mu.Unlock()
				return true
			}
		}
	}
	return false
}

// getJSON reads a JSON answer from a service, found by name in the process
// list (the first healthy one).
func getJSON(t *testing.T, admin, service, path string, out any) error {
	addr, err := processAddr(context.Background(), admin, service)
	if err != nil {
		return err
	}
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s %s: %d", service, path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Every finished ride is charged exactly once and its driver paid exactly
// once, to the cent, while the payments service, the rides service and
// the broker are SIGKILLed at random moments during hundreds of rides
// (hitch up restarts them). The processor's own records (charges,
// payouts, refunds) and the payments ledger are compared with the fares.
func TestHitchExactlyOnceUnderKills(t *testing.T) {
	chaosOnly(t)
	rides := 200
	if testing.Verbose() && os.Getenv("HITCH_CHAOS_RIDES") != "" {
		fmt.Sscan(os.Getenv("HITCH_CHAOS_RIDES"), &rides)
	}
	gw, admin := startHitch(t, "--consumer-rate", "100000/s", "--public-rate", "100000/s")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	k := &killer{t: t, admin: admin, kills: map[string]int{}}
	stopKilling := make(chan struct{})
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		targets := []struct {
			name    string
			replica int
		}{{"payments", 0}, {"payments", 1}, {"rides", 0}, {"rides", 1}, {"broker", 0}}
		for {
			select {
			case <-stopKilling:
				return
			case <-time.After(time.Duration(1000+rand.IntN(2000)) * time.Millisecond):
			}
			v := targets[rand.IntN(len(targets))]
			k.kill(v.name, v.replica)
		}
	}()

	results := make([]sim.Ride, rides)
	errs := make([]error, rides)
	sem := make(chan struct{}, 20)
	var wg sync.WaitGroup
	for i := 0; i < rides; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i], errs[i] = sim.RideOnce(ctx, gw, i)
		}(i)
	}
	wg.Wait()
	close(stopKilling)
	<-killerDone
	t.Logf("kills: %v", k.kills)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ride %d: %v", i, err)
		}
	}
	// Every ride ends paid (the processor takes every card here).
	var wantCharged, wantPaidOut int64
	for i, r := range results {
		final, err := sim.WaitRide(ctx, gw, r.Token, r.ID)
		if err != nil {
			t.Fatalf("ride %d: %v", i, err)
		}
		if final.Status != "paid" {
			t.Fatalf("ride %d (%s) ended %q, want paid", i, r.ID, final.Status)
		}
		results[i] = final
		wantCharged += final.Fare
	}
	// The processor's records: one charge per ride, the sum of the fares;
	// one payout per ride; no refund. The ledger balances.
	type summary struct {
		Charges struct {
			Succeeded int64 `json:"succeeded"`
			Amount    int64 `json:"amount_cents"`
		} `json:"charges"`
		Refunds struct {
			Count int64 `json:"count"`
		} `json:"refunds"`
		Payouts struct {
			Paid   int64 `json:"paid"`
			Amount int64 `json:"amount_cents"`
		} `json:"payouts"`
	}
	var sum summary
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := getJSON(t, admin, "cardprocessor", "/v1/summary", &sum); err != nil {
			t.Fatal(err)
		}
		if sum.Payouts.Paid >= int64(rides) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // payouts follow the charges
	}
	if sum.Charges.Succeeded != int64(rides) || sum.Charges.Amount != wantCharged {
		t.Errorf("processor charges: %d for %d cents, want exactly %d for %d cents", sum.Charges.Succeeded, sum.Charges.Amount, rides, wantCharged)
	}
	if sum.Refunds.Count != 0 {
		t.Errorf("processor refunds: %d, want none", sum.Refunds.Count)
	}
	var ledger struct {
		Total    int64 `json:"total_cents"`
		Balanced bool  `json:"balanced"`
		Accounts []struct {
			Account string `json:"account"`
			Balance int64  `json:"balance_cents"`
		} `json:"accounts"`
	}
	// The ledger settles after the processor: a ride's fee posting can
	// still be on its way (its consumer just restarted) when the last
	// payout is counted. Read it until fees and payouts add up to the
	// charges or the deadline passes; the assertions below judge the last
	// reading.
	var fees int64
	for {
		if err := getJSON(t, admin, "payments", "/v1/ledger/balance", &ledger); err != nil {
			t.Fatal(err)
		}
		fees = 0
		for _, a := range ledger.Accounts {
			if a.Account == "platform:fees" {
				fees = a.Balance
			}
		}
		if fees < 0 {
			fees = -fees
		}
		if sum.Payouts.Amount+fees == wantCharged || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	wantPaidOut = wantCharged - fees
	if sum.Payouts.Paid != int64(rides) || sum.Payouts.Amount != wantPaidOut {
		t.Errorf("processor payouts: %d for %d cents, want exactly %d for %d cents (fares %d - fees %d)",
			sum.Payouts.Paid, sum.Payouts.Amount, rides, wantPaidOut, wantCharged, fees)
	}
	if !ledger.Balanced || ledger.Total != 0 {
		t.Errorf("ledger: total %d, balanced %v", ledger.Total, ledger.Balanced)
	}
	t.Logf("%d rides paid: charged %d cents, paid out %d cents, fees %d cents; kills %v", rides, sum.Charges.Amount, sum.Payouts.Amount, fees, k.kills)
}

// 99.9% of requests succeed while one replica of each replicated service
// is SIGKILLed every 30 s (hitch up restarts it), with simulated riders
// and drivers going about their rides through the gateway.
func TestHitchAvailabilityUnderReplicaKills(t *testing.T) {
	chaosOnly(t)
	gw, admin := startHitch(t, "--consumer-rate", "100000/s", "--public-rate", "100000/s")
	k := &killer{t: t, admin: admin, kills: map[string]int{}}
	const every, duration = 30 * time.Second, 100 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		services := []string{"identity", "location", "matching", "rides", "views", "payments", "notifications", "web"}
		for round := 0; ; round++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
			for _, s := range services {
				if !k.kill(s, round%2) {
					t.Logf("round %d: %s-%d was not up to kill", round, s, round%2)
				}
			}
		}
	}()
	snap, err := sim.Run(ctx, sim.Config{BaseURL: gw, Drivers: 60, Riders: 200, Duration: duration,
		PositionEvery: 2 * time.Second, RideEvery: 5 * time.Second, Speed: 300})
	cancel()
	<-killerDone
	if err != nil {
		t.Fatal(err)
	}
	var total, failed int64
	for _, e := range snap.Requests {
		total += e.Count
		failed += e.Errors
		for code, n := range e.ByStatus {
			if code >= 500 {
				failed += n
			}
		}
	}
	t.Logf("kills %v\n%s", k.kills, snap)
	if total < 2000 {
		t.Fatalf("only %d requests: the simulation did not run", total)
	}
	if ok := float64(total-failed) / float64(total); ok < 0.999 {
		t.Errorf("%d of %d requests failed (%.3f%% succeeded, want 99.9%%)", failed, total, 100*ok)
	} else {
		t.Logf("%d of %d requests failed: %.3f%% succeeded", failed, total, 100*ok)
	}
	if snap.Rides["paid"] == 0 {
		t.Errorf("no ride was paid during the run: %v", snap.Rides)
	}
}
