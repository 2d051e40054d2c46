package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
)

// TestCrashStreamsGroupsRedrive SIGKILLs a broker process while it appends
// to a stream, commits a consumer group's offsets, dead-letters messages
// (receive + nack with max_deliveries 1) and redrives them back, and
// checks after each restart and at the end that every confirmed stream
// append is at its confirmed offset, a group's committed offset never goes
// back past a commit that was answered, and every confirmed queue message
// is exactly once in the queue or its dead-letter queue (no move loses or
// doubles one).
func TestCrashStreamsGroupsRedrive(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := t.TempDir()
	const rounds = 8
	var (
		mu        sync.Mutex
		appended  = map[string]uint64{} // stream body -> offset answered
		committed uint64                // highest commit answered 200
		published = map[string]bool{}   // rq messages confirmed
		attempted = map[string]bool{}
		redrives  int
	)
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	post := func(url, hdrID, body string, out any) int {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		if hdrID != "" {
			req.Header.Set("Msg-Id", hdrID)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if out != nil && resp.StatusCode < 300 {
			if json.Unmarshal(data, out) != nil {
				return 0
			}
		}
		return resp.StatusCode
	}
	for round := range rounds {
		c := startChild(t, dir)
		base := "http://" + c.addr
		var info broker.StreamInfo
		resp, err := hc.Get(base + "/v1/streams/cs")
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		mu.Lock()
		if got := info.Groups["g"]; got < committed {
			t.Fatalf("round %d: group g committed offset %d after restart, but commit %d was answered", round, got, committed)
		}
		mu.Unlock()
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		worker := func(f func(i int) bool) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil && f(i); i++ {
				}
			}()
		}
		worker(func(i int) bool { // stream appends
			id := fmt.Sprintf("s%d-%d", round, i)
			var r struct{ Offset uint64 }
			if post(base+"/v1/streams/cs/messages", "", id, &r) != http.StatusCreated {
				return false
			}
			mu.Lock()
			appended[id] = r.Offset
			mu.Unlock()
			return true
		})
		worker(func(int) bool { // consumer group: fetch, then commit the next offset
			var page struct{ Next uint64 }
			if post(base+"/v1/streams/cs/groups/g/fetch?max=20&wait=20ms", "", "", &page) != http.StatusOK {
				return false
			}
			if page.Next == 0 {
				return true
			}
			if post(base+"/v1/streams/cs/groups/g/commit", "", fmt.Sprintf(`{"offset":%d}`, page.Next), nil) != http.StatusOK {
				return false
			}
			mu.Lock()
			committed = max(committed, page.Next)
			mu.Unlock()
			return true
		})
		worker(func(i int) bool { // queue publishes
			id := fmt.Sprintf("q%d-%d", round, i)
			mu.Lock()
			attempted[id] = true
			mu.Unlock()
			if post(base+"/v1/queues/rq/messages", id, id, nil) != http.StatusCreated {
				return false
			}
			mu.Lock()
			published[id] = true
			mu.Unlock()
			return true
		})
		worker(func(int) bool { // receive + nack: straight to rq.dlq
			var ds []broker.ReceivedMessage
			if post(base+"/v1/queues/rq/receive?max=10&wait=20ms", "", "", &ds) != http.StatusOK {
				return false
			}
			if len(ds) == 0 {
				return true
			}
			var req settleRequest
			for _, d := range ds {
				req.Receipts = append(req.Receipts, d.Receipt)
			}
			body, _ := json.Marshal(req)
			return post(base+"/v1/queues/rq/nack", "", string(body), nil) == http.StatusOK
		})
		worker(func(int) bool { // redrive back from rq.dlq
			var r map[string]int
			st := post(base+"/v1/queues/rq/redrive", "", "", &r)
			if st == http.StatusOK && r["moved"] > 0 {
				mu.Lock()
				redrives += r["moved"]
				mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond) // pacing, not waiting for anything
			return st == http.StatusOK
		})
		time.Sleep(time.Duration(100+rand.IntN(250)) * time.Millisecond)
		c.kill()
		stop()
		wg.Wait()
		tr.CloseIdleConnections()
	}

	b, err := engine.Open(engine.Config{Dir: dir})
	if err != nil {
		t.Fatalf("reopening after crashes: %v", err)
	}
	defer b.Close()
	mu.Lock()
	defer mu.Unlock()
	// Stream: every confirmed append at its offset, once.
	bodyAt := map[uint64]string{}
	for from := uint64(0); ; {
		ms, err := b.Read(context.Background(), "cs", from, broker.ReadOptions{Max: 10000})
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		for _, m := range ms {
			bodyAt[m.Offset] = string(m.Body)
		}
		from = ms[len(ms)-1].Offset + 1
	}
	for id, off := range appended {
		if bodyAt[off] != id {
			t.Errorf("stream append %s confirmed at offset %d, the stream has %q there", id, off, bodyAt[off])
		}
	}
	info, _ := b.Stream("cs")
	if info.Groups["g"] < committed {
		t.Errorf("group g committed offset %d, but commit %d was answered", info.Groups["g"], committed)
	}
	// Queue and dead-letter queue: every confirmed message exactly once.
	got := map[string]int{}
	for _, q := range []string{"rq", "rq.dlq"} {
		for {
			ds, err := b.Receive(context.Background(), q, broker.ReceiveOptions{Max: 1000, AutoAck: true})
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
	}
	t.Logf("%d rounds: %d appends, commit %d, %d queue messages confirmed, %d redriven, %d found", rounds, len(appended), committed, len(published), redrives, len(got))
	if len(appended) == 0 || committed == 0 || len(published) == 0 || redrives == 0 {
		t.Fatal("the test did not exercise appends, commits, publishes and redrives")
	}
	for id := range published {
		if got[id] != 1 {
			t.Errorf("confirmed message %s is %d times in rq and rq.dlq", id, got[id])
		}
	}
	for id, n := range got {
		if n != 1 || !attempted[id] {
			t.Errorf("message %s: %d times (attempted %v)", id, n, attempted[id])
		}
	}
}
