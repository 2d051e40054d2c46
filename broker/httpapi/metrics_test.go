package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
)

// scrape reads GET /metrics into series (`name{label="v",...}`, labels
// sorted by name as the exposition prints them) -> value.
func (c *client) scrape() map[string]float64 {
	c.t.Helper()
	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		c.t.Fatalf("GET /metrics: %d %s", resp.StatusCode, data)
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			c.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsOverHTTP(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewWithOptions(b, Options{Metrics: reg}))
	t.Cleanup(func() { srv.Close(); b.Close() })
	c := &client{t: t, base: srv.URL}

	must := func(want int, method, path, body string, hdr map[string]string, out any) {
		t.Helper()
		if st := c.do(method, path, body, hdr, out); st != want {
			t.Fatalf("%s %s: status %d, want %d", method, path, st, want)
		}
	}
	type recv []struct {
		ID         string `json:"id"`
		Receipt    string `json:"receipt"`
		Body       []byte `json:"body"`
		Deliveries int    `json:"deliveries"`
	}
	settle := func(op, receipt string) {
		t.Helper()
		var res broker.AckResult
		must(200, "POST", "/v1/queues/orders/"+op, `{"receipts":["`+receipt+`"]}`, nil, &res)
		if res.Done != 1 {
			t.Fatalf("%s %s: %+v", op, receipt, res)
		}
	}

	must(200, "PUT", "/v1/queues/orders", `{"max_deliveries":2,"max_length":4,"max_message_size":8}`, nil, nil)
	must(200, "PUT", "/v1/queues/ttl", `{"dead_letter":"none"}`, nil, nil)
	for _, body := range []string{"a", "b", "c"} {
		must(201, "POST", "/v1/queues/orders/messages", body, nil, nil)
	}
	must(413, "POST", "/v1/queues/orders/messages", "123456789", nil, nil)                      // too_large
	must(201, "POST", "/v1/queues/orders/messages", "d", map[string]string{"Delay": "1h"}, nil) // 4 held: full
	must(503, "POST", "/v1/queues/orders/messages", "e", nil, nil)                              // queue_full

	var got recv
	must(200, "POST", "/v1/queues/orders/receive?max=2", "", nil, &got)
	if len(got) != 2 || string(got[0].Body) != "a" || string(got[1].Body) != "b" {
		t.Fatalf("first receive: %+v", got)
	}
	settle("ack", got[0].Receipt)
	settle("nack", got[1].Receipt) // b comes back at once
	must(200, "POST", "/v1/queues/orders/receive?max=10", "", nil, &got)
	if len(got) != 2 || string(got[0].Body) != "b" || got[0].Deliveries != 2 || string(got[1].Body) != "c" {
		t.Fatalf("second receive: %+v", got)
	}
	settle("nack", got[0].Receipt) // second delivery of b = max_deliveries: dead-lettered

	must(201, "POST", "/v1/queues/ttl/messages", "x", map[string]string{"TTL": "1ms"}, nil)
	time.Sleep(20 * time.Millisecond)
	must(200, "POST", "/v1/queues/ttl/receive", "", nil, &got) // expired: dropped (no dead-letter queue)
	if len(got) != 0 {
		t.Fatalf("expired message delivered: %+v", got)
	}

	must(200, "PUT", "/v1/topics/rides", `{}`, nil, nil)
	resp, err := http.Get(c.base + "/v1/topics/rides/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); !strings.HasPrefix(line, ": subscribed") {
		t.Fatalf("subscribe: first line %q", line)
	}
	must(201, "POST", "/v1/topics/rides/messages", "r1", nil, nil)
	must(201, "POST", "/v1/topics/rides/messages", "r2", nil, nil)

	must(200, "PUT", "/v1/streams/locations", `{}`, nil, nil)
	for i := range 3 {
		must(201, "POST", "/v1/streams/locations/messages", fmt.Sprint(i), nil, nil)
	}
	must(200, "POST", "/v1/streams/locations/groups/billing/commit", `{"offset":2}`, nil, nil)

	m := c.scrape()
	want := map[string]float64{
		`switchyard_broker_queue_published_total{queue="orders"}`:                    4,
		`switchyard_broker_queue_delivered_total{queue="orders"}`:                    4,
		`switchyard_broker_queue_redelivered_total{queue="orders"}`:                  1,
		`switchyard_broker_queue_acked_total{queue="orders"}`:                        1,
		`switchyard_broker_queue_nacked_total{queue="orders"}`:                       2,
		`switchyard_broker_queue_dead_lettered_total{queue="orders"}`:                1,
		`switchyard_broker_queue_dropped_total{queue="orders"}`:                      0,
		`switchyard_broker_queue_expired_total{queue="orders"}`:                      0,
		`switchyard_broker_queue_rejected_total{queue="orders",reason="queue_full"}`: 1,
		`switchyard_broker_queue_rejected_total{queue="orders",reason="too_large"}`:  1,
		`switchyard_broker_queue_depth{queue="orders"}`:                              0,
		`switchyard_broker_queue_in_flight{queue="orders"}`:                          1, // c
		`switchyard_broker_queue_delayed{queue="orders"}`:                            1, // d
		`switchyard_broker_queue_dead_letter_depth{queue="orders"}`:                  1, // b
		`switchyard_broker_queue_published_total{queue="orders.dlq"}`:                0,
		`switchyard_broker_queue_depth{queue="orders.dlq"}`:                          1,
		`switchyard_broker_queue_published_total{queue="ttl"}`:                       1,
		`switchyard_broker_queue_delivered_total{queue="ttl"}`:                       0,
		`switchyard_broker_queue_dead_lettered_total{queue="ttl"}`:                   0,
		`switchyard_broker_queue_dropped_total{queue="ttl"}`:                         1,
		`switchyard_broker_queue_expired_total{queue="ttl"}`:                         1,
		`switchyard_broker_queue_depth{queue="ttl"}`:                                 0,
		`switchyard_broker_topic_published_total{topic="rides"}`:                     2,
		`switchyard_broker_topic_subscribers{topic="rides"}`:                         1,
		`switchyard_broker_stream_appended_total{stream="locations"}`:                3,
		`switchyard_broker_stream_group_lag{group="billing",stream="locations"}`:     2,
		`switchyard_broker_fsync_duration_seconds_bucket{log="queues",le="+Inf"}`:    m[`switchyard_broker_fsync_duration_seconds_count{log="queues"}`],
		`switchyard_broker_fsync_records_bucket{log="stream:locations",le="+Inf"}`:   m[`switchyard_broker_fsync_records_count{log="stream:locations"}`],
		`switchyard_broker_publish_confirm_seconds_bucket{le="+Inf"}`:                m[`switchyard_broker_publish_confirm_seconds_count`],
	}
	for series, v := range want {
		if got, ok := m[series]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	for _, series := range []string{
		`switchyard_broker_queue_dead_letter_depth{queue="ttl"}`,        // dead_letter none
		`switchyard_broker_queue_dead_letter_depth{queue="orders.dlq"}`, // a dead-letter queue has none
	} {
		if _, ok := m[series]; ok {
			t.Errorf("%s present", series)
		}
	}
	// Histograms: the queue log fsynced every confirmed operation's
	// records; the stream log one append at a time; confirms were timed.
	if n := m[`switchyard_broker_fsync_duration_seconds_count{log="queues"}`]; n < 1 {
		t.Errorf("queue log fsyncs: %v", n)
	}
	if n := m[`switchyard_broker_fsync_records_sum{log="queues"}`]; n < 5 {
		t.Errorf("queue log records fsynced: %v, want at least the 5 publishes", n)
	}
	if n := m[`switchyard_broker_fsync_records_sum{log="stream:locations"}`]; n != 3 {
		t.Errorf("stream records fsynced: %v, want 3", n)
	}
	if n := m[`switchyard_broker_publish_confirm_seconds_count`]; n < 1 || n > 5 {
		t.Errorf("publish confirms timed: %v, want 1..5", n)
	}

	// Deleting a queue removes its series; the registry stays usable.
	must(204, "DELETE", "/v1/queues/ttl", "", nil, nil)
	if _, ok := c.scrape()[`switchyard_broker_queue_published_total{queue="ttl"}`]; ok {
		t.Error("deleted queue still exported")
	}
}

func TestMetricsOffByDefault(t *testing.T) {
	c := newServer(t)
	if st := c.do("GET", "/metrics", "", nil, nil); st != 404 {
		t.Fatalf("GET /metrics without Options.Metrics: %d, want 404", st)
	}
}
