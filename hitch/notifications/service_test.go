package notifications_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/hitchtest"
	"github.com/switchyard/switchyard/hitch/notifications"
	"github.com/switchyard/switchyard/kit/message"
)

// replica is one running notifications service behind an HTTP server.
type replica struct {
	svc *notifications.Service
	srv *httptest.Server
}

func startReplica(t *testing.T, bus message.Backend, cfg notifications.Config) *replica {
	t.Helper()
	svc, err := notifications.New(context.Background(), nil, bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	if bus != nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	return &replica{svc: svc, srv: srv}
}

// sseEvent is one parsed SSE event.
type sseEvent struct{ id, event, data string }

// sseClient reads an SSE stream as a browser would (fetch + reader).
type sseClient struct {
	resp   *http.Response
	events chan sseEvent
	lines  chan string // every line, comments too
}

func dialSSE(t *testing.T, url, user, role string, hdr ...string) *sseClient {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/events", nil)
	req.Header.Set(hitch.HeaderUser, user)
	req.Header.Set(hitch.HeaderScopes, role)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /v1/events as %s: %d %q", user, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{resp: resp, events: make(chan sseEvent, 1024), lines: make(chan string, 1024)}
	go func() {
		defer close(c.events)
		br := bufio.NewReader(resp.Body)
		var ev sseEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			select {
			case c.lines <- line:
			default:
			}
			switch {
			case line == "":
				if ev.event != "" {
					c.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return c
}

func (c *sseClient) next(t *testing.T, within time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
	}
	return sseEvent{}
}

func (c *sseClient) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case ev, ok := <-c.events:
		if ok {
			t.Fatalf("unexpected event %+v", ev)
		}
	case <-time.After(within):
	}
}

func publish(t *testing.T, bus message.Backend, topic, kind, id string, payload any) {
	t.Helper()
	m, err := hitch.Event(kind, id, "", payload)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Publish(ctx, "topic:"+topic, m); err != nil {
		t.Fatal(err)
	}
}

// waitLive publishes probe events (ride.started of a probe ride for
// user) until c sees one: the live subscriptions are up from then on.
func waitLive(t *testing.T, bus message.Backend, c *sseClient, user string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		publish(t, bus, hitch.TopicRides, hitch.KindRideStarted, fmt.Sprintf("probe-%s-%d", user, i),
			hitch.RideRef{RideID: fmt.Sprintf("probe-%d", i), RiderID: user})
		select {
		case ev := <-c.events:
			if ev.event != notifications.RideStarted {
				t.Fatalf("probe: got %+v", ev)
			}
			// drain probes that arrive late
			for {
				select {
				case <-c.events:
				case <-time.After(100 * time.Millisecond):
					return
				}
			}
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the service never received a probe event from the broker")
		}
	}
}

// The whole flow of one ride through the broker: each party sees its own
// notifications, nobody else sees anything.
func TestSSERideFlowThroughBroker(t *testing.T) {
	b := hitchtest.StartBroker(t)
	bus := b.Open(t)
	r := startReplica(t, b.Open(t), notifications.Config{})

	rider := dialSSE(t, r.srv.URL, "rider-1", hitch.RoleRider)
	driver := dialSSE(t, r.srv.URL, "driver-1", hitch.RoleDriver)
	other := dialSSE(t, r.srv.URL, "rider-2", hitch.RoleRider)
	waitLive(t, bus, rider, "rider-1")
	waitLive(t, bus, driver, "driver-1")

	ref := hitch.RideRef{RideID: "ride-1", RiderID: "rider-1", DriverID: "driver-1", At: time.Now().UTC()}
	publish(t, bus, hitch.TopicRides, hitch.KindRideMatched, "e1", hitch.RideMatched{RideRef: ref, From: hitch.Point{Lat: 40.71, Lon: -74.0}, To: hitch.Point{Lat: 40.75, Lon: -73.98}})
	publish(t, bus, hitch.TopicRides, hitch.KindRideStarted, "e2", ref)
	publish(t, bus, hitch.TopicRides, hitch.KindRideFinished, "e3", hitch.RideFinished{RideRef: ref, DistanceMi: 3, FareCents: 700, FeeCents: 140})
	publish(t, bus, hitch.TopicPayments, hitch.KindPaymentCharged, "e4", hitch.PaymentCharged{RideRef: ref, AmountCents: 700, FeeCents: 140, ChargeID: "ch-1"})
	publish(t, bus, hitch.TopicRides, hitch.KindRidePaid, "e5", ref) // the same receipt again: pushed once
	publish(t, bus, hitch.TopicPayments, hitch.KindPayoutPaid, "e6", hitch.PayoutPaid{RideRef: ref, AmountCents: 560})

	// Topics are delivered independently (rides and payments are two
	// subscriptions): order holds within a topic, not across them (CI saw
	// e4 from payments before e3 from rides). The receipt comes from
	// whichever of payment.charged (e4) and ride.paid (e5, rides topic)
	// arrives first, and only once.
	check := func(who string, c *sseClient, inOrder []struct{ id, event, field string }, other func(ev sseEvent) bool) {
		t.Helper()
		var got []sseEvent
		for range len(inOrder) + 1 {
			got = append(got, c.next(t, 5*time.Second))
		}
		i, others := 0, 0
		for _, ev := range got {
			if i < len(inOrder) && ev.id == inOrder[i].id {
				if ev.event != inOrder[i].event || !strings.Contains(ev.data, inOrder[i].field) {
					t.Fatalf("%s got %+v, want event %s with %s", who, ev, inOrder[i].event, inOrder[i].field)
				}
				i++
				continue
			}
			if !other(ev) {
				t.Fatalf("%s got %+v out of place; all: %+v", who, ev, got)
			}
			others++
		}
		if i != len(inOrder) || others != 1 {
			t.Fatalf("%s got %+v", who, got)
		}
	}
	rides := func(party string, fin string) []struct{ id, event, field string } {
		return []struct{ id, event, field string }{
			{"e1", party, map[string]string{notifications.DriverFound: `"driver_id":"driver-1"`, notifications.PassengerFound: `"rider_id":"rider-1"`}[party]},
			{"e2", notifications.RideStarted, `"ride_id":"ride-1"`},
			{"e3", notifications.RideFinished, fin},
		}
	}
	check("rider", rider, rides(notifications.DriverFound, `"fare_cents":700`), func(ev sseEvent) bool {
		// From payment.charged with the amount, or from ride.paid (which
		// carries none) when that one arrived first.
		return ev.event == notifications.Receipt && (ev.id == "e4" && strings.Contains(ev.data, `"amount_cents":700`) ||
			ev.id == "e5" && strings.Contains(ev.data, `"status":"paid"`))
	})
	check("driver", driver, rides(notifications.PassengerFound, `"fee_cents":140`), func(ev sseEvent) bool {
		return ev.id == "e6" && ev.event == notifications.Payout && strings.Contains(ev.data, `"amount_cents":560`)
	})
	rider.none(t, 300*time.Millisecond) // e5 repeated the receipt
	other.none(t, 10*time.Millisecond)

	resp, err := http.Get(r.srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Clients, Subscriptions int
		Pushed                 int64
	}
	_ = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || h.Subscriptions != len(notifications.Topics) || h.Clients != 3 || h.Pushed < 8 {
		t.Fatalf("healthz: %d %+v, want 200 with %d subscriptions, 3 clients, 8+ pushed", resp.StatusCode, h, len(notifications.Topics))
	}
}

func TestUnauthenticated(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{})
	for _, path := range []string{"/v1/events", "/v1/events/ws"} {
		for _, hdr := range [][2]string{{"", ""}, {hitch.HeaderUser, "u"}} {
			req, _ := http.NewRequest(http.MethodGet, r.srv.URL+path, nil)
			if hdr[0] != "" {
				req.Header.Set(hdr[0], hdr[1]) // a user but no role
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e struct{ Error, Code string }
			_ = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || e.Code != "unauthenticated" || e.Error == "" {
				t.Errorf("%s with %v: %d %+v, want 401 unauthenticated", path, hdr, resp.StatusCode, e)
			}
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodHead, http.MethodDelete} {
		req, _ := http.NewRequest(m, r.srv.URL+"/v1/events", nil)
		req.Header.Set(hitch.HeaderUser, "u")
		req.Header.Set(hitch.HeaderScopes, hitch.RoleRider)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
			t.Errorf("%s /v1/events: %d, want 405 with Allow: GET", m, resp.StatusCode)
		}
	}
	resp, err := http.Get(r.srv.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", resp.StatusCode)
	}
}

// A client that reconnects with Last-Event-ID gets what it missed (of
// its own), and nothing twice; an unknown id replays nothing.
func TestLastEventID(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{})
	c := dialSSE(t, r.srv.URL, "u1", hitch.RoleRider)
	waitClients(t, r.svc, 1)
	push := func(id, ride, user string) {
		r.svc.Push(hitch.KindRideStarted, id, mustJSON(t, hitch.RideRef{RideID: ride, RiderID: user}))
	}
	push("a1", "r1", "u1")
	if ev := c.next(t, 2*time.Second); ev.id != "a1" {
		t.Fatalf("got %+v", ev)
	}
	c.resp.Body.Close()
	waitClients(t, r.svc, 0)
	push("a2", "r2", "u1")
	push("b1", "r3", "u2") // someone else's
	push("a3", "r4", "u1")

	c2 := dialSSE(t, r.srv.URL, "u1", hitch.RoleRider, "Last-Event-ID", "a1")
	for _, want := range []string{"a2", "a3"} {
		if ev := c2.next(t, 2*time.Second); ev.id != want {
			t.Fatalf("replay: got %+v, want %s", ev, want)
		}
	}
	push("a4", "r5", "u1")
	if ev := c2.next(t, 2*time.Second); ev.id != "a4" {
		t.Fatalf("live after replay: got %+v", ev)
	}
	for _, last := range []string{"zzz", "b1", "a1\r\nevent: evil"} { // unknown, someone else's, malformed
		c3 := dialSSE(t, r.srv.URL, "u1", hitch.RoleRider, "Last-Event-ID", strings.ReplaceAll(last, "\r\n", " "))
		c3.none(t, 100*time.Millisecond)
	}
}

func waitClients(t *testing.T, s *notifications.Service, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Clients() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients connected, want %d", s.Clients(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHeartbeat(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{Heartbeat: 30 * time.Millisecond})
	c := dialSSE(t, r.srv.URL, "u1", hitch.RoleRider)
	deadline := time.After(3 * time.Second)
	beats := 0
	for beats < 3 {
		select {
		case l := <-c.lines:
			if l == ": heartbeat" {
				beats++
			}
		case <-deadline:
			t.Fatalf("%d heartbeats in 3s at a 30ms interval", beats)
		}
	}
}

// A client that never reads is dropped once its buffer fills (and its
// socket's): the others get their notifications meanwhile, on time.
func TestSlowSSEClientIsDroppedOthersUnaffected(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{ClientBuffer: 8, WriteTimeout: 300 * time.Millisecond})
	slow := rawSSE(t, r.srv.URL, "slow", hitch.RoleRider) // never reads
	fast := dialSSE(t, r.srv.URL, "fast", hitch.RoleRider)
	waitClients(t, r.svc, 2)
	big := hitch.PaymentFailed{RideRef: hitch.RideRef{RiderID: "slow"}, Reason: strings.Repeat("x", 4000)}
	start := time.Now()
	for i := 0; r.svc.Dropped() == 0; i++ {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the never-reading client was not dropped within 10s")
		}
		big.RideID = fmt.Sprint("r", i)
		r.svc.Push(hitch.KindPaymentFailed, fmt.Sprint("s", i), mustJSON(t, big))
		if i%100 == 0 {
			r.svc.Push(hitch.KindRideStarted, fmt.Sprint("f", i), mustJSON(t, hitch.RideRef{RideID: fmt.Sprint("f", i), RiderID: "fast"}))
			if ev := fast.next(t, time.Second); ev.id != fmt.Sprint("f", i) {
				t.Fatalf("fast client got %+v", ev)
			}
		}
	}
	waitClients(t, r.svc, 1)
	_ = slow
	r.svc.Push(hitch.KindRideStarted, "after", mustJSON(t, hitch.RideRef{RideID: "after", RiderID: "fast"}))
	if ev := fast.next(t, time.Second); ev.id != "after" {
		t.Fatalf("fast client after the drop got %+v", ev)
	}
}

// rawSSE opens /v1/events on a bare TCP connection and reads nothing.
func rawSSE(t *testing.T, base, user, role string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096) // a small window fills fast
	}
	fmt.Fprintf(conn, "GET /v1/events HTTP/1.1\r\nHost: x\r\n%s: %s\r\n%s: %s\r\n\r\n", hitch.HeaderUser, user, hitch.HeaderScopes, role)
	return conn
}

// A thousand clients at once, each gets its own notification and only it.
func TestThousandClients(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{})
	const n = 1000
	conns := make([]*bufio.Reader, n)
	raw := make([]net.Conn, n)
	for i := range n {
		raw[i] = rawSSE(t, r.srv.URL, fmt.Sprint("user-", i), hitch.RoleRider)
		conns[i] = bufio.NewReader(raw[i])
	}
	waitClients(t, r.svc, n)
	for i := range n {
		r.svc.Push(hitch.KindRideStarted, fmt.Sprint("ev-", i), mustJSON(t, hitch.RideRef{RideID: fmt.Sprint("ride-", i), RiderID: fmt.Sprint("user-", i)}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_ = raw[i].SetReadDeadline(time.Now().Add(20 * time.Second))
			for {
				line, err := conns[i].ReadString('\n')
				if err != nil {
					errs <- fmt.Errorf("client %d: %v", i, err)
					return
				}
				if strings.HasPrefix(line, "id: ") {
					if got, want := strings.TrimSpace(line[4:]), fmt.Sprint("ev-", i); got != want {
						errs <- fmt.Errorf("client %d got %s, want %s", i, got, want)
					}
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A client that goes away mid-stream is forgotten; pushing to its user
// afterwards is harmless.
func TestDisconnectMidStream(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{})
	c := dialSSE(t, r.srv.URL, "u1", hitch.RoleRider)
	waitClients(t, r.svc, 1)
	r.svc.Push(hitch.KindRideStarted, "1", mustJSON(t, hitch.RideRef{RideID: "r1", RiderID: "u1"}))
	c.next(t, 2*time.Second)
	c.resp.Body.Close()
	waitClients(t, r.svc, 0)
	for i := range 100 {
		r.svc.Push(hitch.KindRideStarted, fmt.Sprint("x", i), mustJSON(t, hitch.RideRef{RideID: fmt.Sprint("r", i+2), RiderID: "u1"}))
	}
	if r.svc.Dropped() != 0 {
		t.Errorf("a client that left counted as dropped")
	}
}

// Several replicas: each pushes every event to the clients connected to
// it.
func TestReplicasEachPushToTheirClients(t *testing.T) {
	b := hitchtest.StartBroker(t)
	bus := b.Open(t)
	r1 := startReplica(t, b.Open(t), notifications.Config{})
	r2 := startReplica(t, b.Open(t), notifications.Config{})
	c1 := dialSSE(t, r1.srv.URL, "rider-1", hitch.RoleRider)
	c2 := dialSSE(t, r2.srv.URL, "rider-1", hitch.RoleRider) // the same user on two tabs, two replicas
	d2 := dialSSE(t, r2.srv.URL, "driver-1", hitch.RoleDriver)
	waitLive(t, bus, c1, "rider-1")
	waitLive(t, bus, d2, "driver-1")
	drain(c2) // c2 saw rider-1's probes too
	ref := hitch.RideRef{RideID: "ride-9", RiderID: "rider-1", DriverID: "driver-1"}
	publish(t, bus, hitch.TopicRides, hitch.KindRideMatched, "m9", hitch.RideMatched{RideRef: ref})
	for _, c := range []*sseClient{c1, c2} {
		if ev := c.next(t, 5*time.Second); ev.id != "m9" || ev.event != notifications.DriverFound {
			t.Fatalf("rider got %+v", ev)
		}
	}
	if ev := d2.next(t, 5*time.Second); ev.id != "m9" || ev.event != notifications.PassengerFound {
		t.Fatalf("driver got %+v", ev)
	}
	// A reconnect to the other replica resumes there: both saw m9.
	publish(t, bus, hitch.TopicPayments, hitch.KindPaymentFailed, "pf9", hitch.PaymentFailed{RideRef: ref, Reason: "declined"})
	c1.next(t, 5*time.Second)
	c3 := dialSSE(t, r2.srv.URL, "rider-1", hitch.RoleRider, "Last-Event-ID", "m9")
	if ev := c3.next(t, 5*time.Second); ev.id != "pf9" || ev.event != notifications.PaymentFailed {
		t.Fatalf("resumed on the other replica: %+v", ev)
	}
}

func drain(c *sseClient) {
	for {
		select {
		case <-c.events:
		case <-time.After(200 * time.Millisecond):
			return
		}
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMaxClients(t *testing.T) {
	r := startReplica(t, nil, notifications.Config{MaxClients: 2})
	dialSSE(t, r.srv.URL, "a", hitch.RoleRider)
	dialSSE(t, r.srv.URL, "b", hitch.RoleRider)
	waitClients(t, r.svc, 2)
	req, _ := http.NewRequest(http.MethodGet, r.srv.URL+"/v1/events", nil)
	req.Header.Set(hitch.HeaderUser, "c")
	req.Header.Set(hitch.HeaderScopes, hitch.RoleRider)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third client: %d, want 503 with Retry-After", resp.StatusCode)
	}
}

func TestConfigValidate(t *testing.T) {
	err := notifications.Config{ClientBuffer: -1, Heartbeat: -time.Second}.WithDefaults().Validate()
	if err == nil || !strings.Contains(err.Error(), "notifications.client_buffer") || !strings.Contains(err.Error(), "notifications.heartbeat") {
		t.Fatalf("Validate: %v, want both keys named", err)
	}
	if _, err := notifications.New(context.Background(), nil, nil, notifications.Config{Replay: -5}); err == nil {
		t.Fatal("New accepted a negative replay")
	}
}
