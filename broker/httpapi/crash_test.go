package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	bclient "github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
)

const childEnv = "SWITCHYARD_BROKER_CRASH_CHILD"

// TestMain lets the test binary act as the broker process of the crash test:
// with childEnv set to a data directory it serves that broker until killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := runChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(dir string) error {
	b, err := engine.Open(engine.Config{Dir: dir})
	if err != nil {
		return err
	}
	if err := b.Declare("crash", broker.QueueConfig{DedupWindow: broker.Duration(time.Hour)}); err != nil {
		return err
	}
	// For TestCrashStreamsGroupsRedrive: a nack dead-letters at once.
	if err := b.Declare("rq", broker.QueueConfig{MaxDeliveries: 1, DedupWindow: broker.Duration(time.Hour)}); err != nil {
		return err
	}
	if err := b.DeclareStream("cs", broker.StreamConfig{}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	nln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go native.New(b, native.Options{}).Serve(context.Background(), nln)
	fmt.Println(ln.Addr().String(), nln.Addr().String())
	return http.Serve(ln, New(b))
}

type child struct {
	cmd        *exec.Cmd
	addr       string // HTTP
	nativeAddr string
}

func startChild(t *testing.T, dir string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not start: %v", err)
	}
	go io.Copy(io.Discard, out)
	addrs := strings.Fields(line)
	if len(addrs) != 2 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child printed %q, want two addresses", line)
	}
	return &child{cmd: cmd, addr: addrs[0], nativeAddr: addrs[1]}
}

func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

// TestCrashConfirmedMessagesSurvive publishes with confirms from several
// goroutines (two over HTTP, two over the native protocol in batches of 8),
// SIGKILLs the broker at random moments, restarts it on the same data
// directory, retries unconfirmed messages with the same Msg-Id, and checks
// that every confirmed message is there exactly once and nothing is
// duplicated.
func TestCrashConfirmedMessagesSurvive(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := t.TempDir()
	const rounds, workers = 10, 4
	var (
		mu        sync.Mutex
		confirmed = map[string]bool{}
		attempted = map[string]bool{}
		retry     []string            // unconfirmed, to be retried after restart
		acked     = map[string]bool{} // ack answered 200: must be gone
		ackSent   = map[string]bool{} // ack sent, outcome unknown if not acked
	)
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	publish := func(base, id string) bool {
		req, _ := http.NewRequest("POST", base+"/v1/queues/crash/messages", strings.NewReader(id))
		req.Header.Set("Msg-Id", id)
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusCreated
	}
	for round := range rounds {
		c := startChild(t, dir)
		base := "http://" + c.addr
		mu.Lock()
		todo := retry
		retry = nil
		mu.Unlock()
		ctx, stop := context.WithCancel(context.Background())
		nc, err := bclient.Dial(ctx, c.nativeAddr, bclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := 2; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i += 8 {
					var msgs []broker.Message
					for j := range 8 {
						id := fmt.Sprintf("r%d-w%d-%d", round, w, i+j)
						msgs = append(msgs, broker.Message{ID: id, Body: []byte(id)})
					}
					mu.Lock()
					for _, m := range msgs {
						attempted[m.ID] = true
					}
					mu.Unlock()
					pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_, err := nc.Publish(pctx, "crash", msgs...)
					cancel()
					mu.Lock()
					for _, m := range msgs {
						if err == nil {
							confirmed[m.ID] = true
						} else {
							retry = append(retry, m.ID)
						}
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
		// A consumer acks what it receives; an ack answered 200 must stick.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				ids, ok := consumeAndAck(hc, base, func(ids []string) {
					mu.Lock()
					for _, id := range ids {
						ackSent[id] = true
					}
					mu.Unlock()
				})
				mu.Lock()
				for _, id := range ids {
					acked[id] = true
				}
				mu.Unlock()
				if !ok {
					return
				}
			}
		}()
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					var id string
					if w == 0 && len(todo) > 0 {
						id, todo = todo[0], todo[1:]
					} else {
						id = fmt.Sprintf("r%d-w%d-%d", round, w, i)
					}
					mu.Lock()
					attempted[id] = true
					mu.Unlock()
					ok := publish(base, id)
					mu.Lock()
					if ok {
						confirmed[id] = true
					} else {
						retry = append(retry, id)
					}
					mu.Unlock()
					if !ok {
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		c.kill()
		stop()
		wg.Wait()
		nc.Close()
		tr.CloseIdleConnections()
	}

	b, err := engine.Open(engine.Config{Dir: dir})
	if err != nil {
		t.Fatalf("reopening after crashes: %v", err)
	}
	defer b.Close()
	t.Logf("recovery: %+v", b.Recovery())
	got := map[string]int{}
	for {
		ds, err := b.Receive(context.Background(), "crash", broker.ReceiveOptions{Max: 1000, AutoAck: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			got[string(d.Body)]++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d rounds: %d attempted, %d confirmed, %d acked, %d left", rounds, len(attempted), len(confirmed), len(acked), len(got))
	if len(acked) == 0 {
		t.Fatal("no ack was confirmed: the test did not exercise acks")
	}
	if len(confirmed) < rounds {
		t.Fatalf("only %d messages confirmed in %d rounds: the test did not exercise the broker", len(confirmed), rounds)
	}
	for id := range confirmed {
		switch {
		case acked[id] && got[id] != 0:
			t.Errorf("message %s was acked (200) but came back %d times", id, got[id])
		case ackSent[id] && !acked[id] && got[id] > 1:
			t.Errorf("message %s (ack cut by the crash) stored %d times", id, got[id])
		case !ackSent[id] && got[id] != 1:
			t.Errorf("confirmed message %s stored %d times", id, got[id])
		}
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("message %s stored %d times", id, n)
		}
		if !attempted[id] {
			t.Errorf("message %s was never published", id)
		}
	}
}

// consumeAndAck receives up to 20 messages and acks them, calling sending
// with their ids (bodies) first; it returns the ids whose acks the broker
// confirmed, and false once the broker is unreachable.
func consumeAndAck(hc *http.Client, base string, sending func([]string)) ([]string, bool) {
	resp, err := hc.Post(base+"/v1/queues/crash/receive?max=20&wait=50ms&visibility=1m", "", nil)
	if err != nil {
		return nil, false
	}
	var ds []broker.ReceivedMessage
	err = json.NewDecoder(resp.Body).Decode(&ds)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, false
	}
	if len(ds) == 0 {
		return nil, true
	}
	byReceipt := map[string]string{}
	var req settleRequest
	var all []string
	for _, d := range ds {
		byReceipt[d.Receipt] = string(d.Body)
		req.Receipts = append(req.Receipts, d.Receipt)
		all = append(all, string(d.Body))
	}
	sending(all)
	body, _ := json.Marshal(req)
	resp, err = hc.Post(base+"/v1/queues/crash/ack", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, false
	}
	var res broker.AckResult
	err = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, false
	}
	for _, f := range res.Failed {
		delete(byReceipt, f.Receipt)
	}
	ids := make([]string, 0, len(byReceipt))
	for _, id := range byReceipt {
		ids = append(ids, id)
	}
	return ids, true
}
