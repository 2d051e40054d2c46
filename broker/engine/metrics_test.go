package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchyard/switchyard/broker"
)

// gathered returns the registry's series as `name{v1,v2}` -> value
// (counter, gauge, or a histogram's sample count), label values in the
// order the exposition sorts them (by label name).
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var vals []string
			for _, l := range m.GetLabel() {
				vals = append(vals, l.GetValue())
			}
			key := fmt.Sprintf("%s{%s}", mf.GetName(), strings.Join(vals, ","))
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	b, err := Open(Config{Dir: dir, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	// One collector per broker: a second open broker on the same registry
	// is refused, and leaves nothing behind.
	if b2, err := Open(Config{Dir: t.TempDir(), Metrics: reg}); err == nil || !strings.Contains(err.Error(), "registering broker metrics") {
		if b2 != nil {
			b2.Close()
		}
		t.Fatalf("second broker on one registry: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Close unregistered the collector: the registry serves a reopened
	// broker, whose counters start from zero (replay counts nothing).
	b, err = Open(Config{Dir: dir, Metrics: reg})
	if err != nil {
		t.Fatalf("reopen on the same registry: %v", err)
	}
	defer b.Close()
	if err := b.Declare("q", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	b.RecordTooLarge("q")
	b.RecordTooLarge("missing") // ignored
	m := gathered(t, reg)
	if v := m["switchyard_broker_queue_rejected_total{q,too_large}"]; v != 1 {
		t.Fatalf("too_large = %v, want 1 (series %v)", v, m)
	}
}

func TestMetricsConfirmBatch(t *testing.T) {
	// The native protocol publishes without waiting and confirms a batch
	// once: every message of the batch is timed. No tick promotes first.
	reg := prometheus.NewRegistry()
	b, err := Open(Config{Dir: t.TempDir(), Metrics: reg, TickInterval: broker.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Declare("q", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var res []broker.PublishResult
	for range 10 {
		r, err := b.Publish(ctx, "q", broker.Message{Body: []byte("x")}, broker.PublishOptions{NoWait: true})
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, r)
	}
	if err := b.Confirm(ctx, "q", res[len(res)-1:]); err != nil {
		t.Fatal(err)
	}
	m := gathered(t, reg)
	for series, want := range map[string]float64{
		"switchyard_broker_publish_confirm_seconds{}":  10,
		"switchyard_broker_queue_published_total{q}":   10,
		"switchyard_broker_queue_depth{q}":             10,
		"switchyard_broker_fsync_records{queues}":      m["switchyard_broker_fsync_duration_seconds{queues}"],
		"switchyard_broker_queue_dead_letter_depth{q}": 0,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
	if m["switchyard_broker_fsync_duration_seconds{queues}"] < 1 {
		t.Errorf("no fsync timed: %v", m)
	}
}

func TestGroupLag(t *testing.T) {
	for _, tc := range []struct {
		first, last, committed, want uint64
	}{
		{0, 0, 0, 0},   // empty stream
		{1, 10, 0, 10}, // new group: everything
		{1, 10, 1, 10},
		{1, 10, 4, 7},
		{1, 10, 11, 0}, // caught up
		{5, 10, 2, 6},  // offsets 2..4 deleted by retention do not count
	} {
		if got := groupLag(tc.first, tc.last, tc.committed); got != tc.want {
			t.Errorf("groupLag(%d, %d, %d) = %d, want %d", tc.first, tc.last, tc.committed, got, tc.want)
		}
	}
}

// BenchmarkPublishMetrics shows what exporting metrics costs a publish:
// "nowait" is the CPU path alone (fire-and-forget, no fsync wait),
// "confirmed" a publish answered after its group commit.
func BenchmarkPublishMetrics(b *testing.B) {
	for _, mode := range []string{"nowait", "confirmed"} {
		for _, on := range []bool{false, true} {
			name := mode + "/metrics=off"
			if on {
				name = mode + "/metrics=on"
			}
			b.Run(name, func(b *testing.B) {
				cfg := Config{Dir: b.TempDir()}
				if on {
					cfg.Metrics = prometheus.NewRegistry()
				}
				br, err := Open(cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer br.Close()
				if err := br.Declare("q", broker.QueueConfig{DedupWindow: -1}); err != nil {
					b.Fatal(err)
				}
				body := make([]byte, 128)
				ctx := context.Background()
				opts := broker.PublishOptions{NoWait: mode == "nowait"}
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				if !opts.NoWait {
					b.SetParallelism(64)
				}
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := br.Publish(ctx, "q", broker.Message{Body: body}, opts); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkScrape is the cost of one scrape of a broker with 100 queues.
func BenchmarkScrape(b *testing.B) {
	reg := prometheus.NewRegistry()
	br, err := Open(Config{Dir: b.TempDir(), Metrics: reg})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	for i := range 100 {
		if err := br.Declare(fmt.Sprintf("q%d", i), broker.QueueConfig{DeadLetter: broker.NoDeadLetter}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// Oversized publishes to topics and appends to streams are counted like a
// queue's, whichever way they are refused.
func TestMetricsTopicAndStreamRejects(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, err := Open(Config{Dir: t.TempDir(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if err := b.DeclareTopic("t", broker.TopicConfig{MaxMessageSize: 4}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareStream("s", broker.StreamConfig{MaxMessageSize: 4}); err != nil {
		t.Fatal(err)
	}
	big := broker.Message{Body: []byte("12345")}
	if _, err := b.PublishTopic(ctx, "t", big, broker.PublishOptions{}); err == nil {
		t.Fatal("oversized topic publish accepted")
	}
	if _, err := b.PublishTopicBatch(ctx, "t", []broker.Message{{Body: []byte("ok")}, big}, broker.PublishOptions{}); err == nil {
		t.Fatal("oversized topic batch accepted")
	}
	b.RecordTopicTooLarge("t")     // refused by a front end
	b.RecordTopicTooLarge("nope")  // unknown: ignored
	b.RecordStreamTooLarge("nope") // unknown: ignored
	if _, err := b.Append(ctx, "s", big); err == nil {
		t.Fatal("oversized append accepted")
	}
	if _, err := b.AppendBatch(ctx, "s", []broker.Message{big}); err == nil {
		t.Fatal("oversized append batch accepted")
	}
	got := gathered(t, reg)
	for key, want := range map[string]float64{
		"switchyard_broker_topic_rejected_total{too_large,t}":  3,
		"switchyard_broker_stream_rejected_total{too_large,s}": 2,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}
