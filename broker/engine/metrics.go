package engine

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchyard/switchyard/broker"
)

// Metrics. Counting is always on and costs one atomic add per event on
// counters kept in the queue (or stream) itself, so the hot paths never look
// up a label. Exporting is opt-in (Config.Metrics): then one collector reads
// those counters, and the queue, topic and stream state for the gauges, at
// scrape time, and the broker also times fsyncs and publish confirms.
//
// Queue counters count events of this process (they restart from zero when
// the broker restarts or a queue is deleted and declared again); replaying
// the log counts nothing.

// queueStats are a queue's event counters.
type queueStats struct {
	published    atomic.Uint64 // accepted from producers (directly or through a topic)
	delivered    atomic.Uint64 // handed to consumers, redeliveries included
	redelivered  atomic.Uint64 // deliveries after the first
	acked        atomic.Uint64 // acked by consumers, or auto-acked on delivery
	nacked       atomic.Uint64 // returned by consumers
	deadLettered atomic.Uint64 // moved to the dead-letter queue
	dropped      atomic.Uint64 // removed without dead-lettering (retention, dead_letter none)
	expired      atomic.Uint64 // TTL passed (also counted as dead-lettered or dropped)
	full         atomic.Uint64 // publishes refused: queue at max_length
	tooLarge     atomic.Uint64 // publishes refused: body above max_message_size
}

// countDead counts a message that left its queue for reason (see
// deadLetter): moved to the dead-letter queue, or dropped.
func (s *queueStats) countDead(reason string, dropped bool) {
	if dropped {
		s.dropped.Add(1)
	} else {
		s.deadLettered.Add(1)
	}
	if reason == "expired" {
		s.expired.Add(1)
	}
}

// RecordTooLarge counts, in the queue's metrics, a publish that a front end
// refused as larger than the queue's max_message_size before calling
// Publish (e.g. from its Content-Length). An unknown queue is ignored.
func (b *Broker) RecordTooLarge(queue string) {
	if q, err := b.queue(queue); err == nil {
		q.stats.tooLarge.Add(1)
	}
}

// RecordTopicTooLarge counts a publish to a topic that a front end refused
// as larger than its max_message_size. An unknown topic is ignored.
func (b *Broker) RecordTopicTooLarge(name string) {
	b.mu.RLock()
	t := b.topics[name]
	b.mu.RUnlock()
	if t != nil {
		t.tooLarge.Add(1)
	}
}

// RecordStreamTooLarge counts an append to a stream that a front end
// refused as larger than its max_message_size. An unknown stream is
// ignored.
func (b *Broker) RecordStreamTooLarge(name string) {
	b.mu.RLock()
	s := b.streams[name]
	b.mu.RUnlock()
	if s != nil {
		s.tooLarge.Add(1)
	}
}

// Descriptions of the metrics read at scrape time.
var (
	queueLabel = []string{"queue"}

	descQueuePublished    = prometheus.NewDesc("switchyard_broker_queue_published_total", "Messages accepted from producers (directly or through a topic), duplicates and dead-letter moves excluded.", queueLabel, nil)
	descQueueDelivered    = prometheus.NewDesc("switchyard_broker_queue_delivered_total", "Messages handed to consumers, redeliveries included.", queueLabel, nil)
	descQueueRedelivered  = prometheus.NewDesc("switchyard_broker_queue_redelivered_total", "Deliveries of messages delivered before (after a nack or a visibility timeout).", queueLabel, nil)
	descQueueAcked        = prometheus.NewDesc("switchyard_broker_queue_acked_total", "Messages acknowledged by consumers, or auto-acked on delivery.", queueLabel, nil)
	descQueueNacked       = prometheus.NewDesc("switchyard_broker_queue_nacked_total", "Messages returned by consumers with a nack.", queueLabel, nil)
	descQueueDeadLettered = prometheus.NewDesc("switchyard_broker_queue_dead_lettered_total", "Messages moved to the queue's dead-letter queue (max_deliveries reached or TTL passed).", queueLabel, nil)
	descQueueDropped      = prometheus.NewDesc("switchyard_broker_queue_dropped_total", "Messages removed without dead-lettering: past retention, or dead_letter none.", queueLabel, nil)
	descQueueExpired      = prometheus.NewDesc("switchyard_broker_queue_expired_total", "Messages whose TTL passed before they were consumed (also counted as dead-lettered or dropped).", queueLabel, nil)
	descQueueRejected     = prometheus.NewDesc("switchyard_broker_queue_rejected_total", "Publishes refused, by reason: queue_full (max_length) or too_large (max_message_size).", []string{"queue", "reason"}, nil)

	descQueueDepth    = prometheus.NewDesc("switchyard_broker_queue_depth", "Messages waiting to be delivered: ready, or queued behind an earlier message with the same key (the depth of GET /v1/queues/NAME).", queueLabel, nil)
	descQueueInFlight = prometheus.NewDesc("switchyard_broker_queue_in_flight", "Messages delivered and not yet acked.", queueLabel, nil)
	descQueueDelayed  = prometheus.NewDesc("switchyard_broker_queue_delayed", "Messages not deliverable yet (publish delay or nack delay).", queueLabel, nil)
	descQueueDLQDepth = prometheus.NewDesc("switchyard_broker_queue_dead_letter_depth", "Messages held by the queue's dead-letter queue (absent for a queue without one).", queueLabel, nil)

	descTopicPublished   = prometheus.NewDesc("switchyard_broker_topic_published_total", "Messages published to the topic.", []string{"topic"}, nil)
	descTopicSubscribers = prometheus.NewDesc("switchyard_broker_topic_subscribers", "Live subscribers of the topic.", []string{"topic"}, nil)
	descTopicRejected    = prometheus.NewDesc("switchyard_broker_topic_rejected_total", "Publishes refused, by reason: too_large (max_message_size).", []string{"topic", "reason"}, nil)

	descStreamAppended = prometheus.NewDesc("switchyard_broker_stream_appended_total", "Messages appended (durably) to the stream since the broker started.", []string{"stream"}, nil)
	descStreamRejected = prometheus.NewDesc("switchyard_broker_stream_rejected_total", "Appends refused, by reason: too_large (max_message_size).", []string{"stream", "reason"}, nil)
	descStreamLag      = prometheus.NewDesc("switchyard_broker_stream_group_lag", "Durable messages after the consumer group's committed offset, not yet committed by the group.", []string{"stream", "group"}, nil)
)

// Log labels of the fsync histograms.
const queueLogLabel = "queues"

func streamLogLabel(name string) string { return "stream:" + name }

// metrics is the collector of one broker (Config.Metrics).
type metrics struct {
	b   *Broker
	reg prometheus.Registerer

	fsyncSeconds *prometheus.HistogramVec // by log
	fsyncRecords *prometheus.HistogramVec // by log
	confirm      prometheus.Histogram
}

var _ prometheus.Collector = (*metrics)(nil)

// newMetrics creates b's collector and registers it with reg.
func newMetrics(b *Broker, reg prometheus.Registerer) (*metrics, error) {
	seconds := prometheus.ExponentialBuckets(50e-6, 2, 17) // 50µs .. 3.3s
	m := &metrics{
		b:   b,
		reg: reg,
		fsyncSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_broker_fsync_duration_seconds",
			Help:    "Time an fsync of a log segment took, by log (\"queues\" for the queue log, \"stream:NAME\" for a stream).",
			Buckets: seconds,
		}, []string{"log"}),
		fsyncRecords: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_broker_fsync_records",
			Help:    "Records made durable by one fsync (the group-commit batch size), by log.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 .. 8192
		}, []string{"log"}),
		confirm: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "switchyard_broker_publish_confirm_seconds",
			Help: "Time from a queue publish until it is durable and visible, for messages made visible by a confirmed publish " +
				"(HTTP, or a native-protocol batch confirm).",
			Buckets: seconds,
		}),
	}
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

// unregister removes the collector from its registry.
func (m *metrics) unregister() {
	if m != nil {
		m.reg.Unregister(m)
	}
}

// fsyncHook returns the wal.Options.OnFsync of the log labelled log, with
// its histograms resolved once; nil when metrics are off.
func (m *metrics) fsyncHook(log string) func(time.Duration, int) {
	if m == nil {
		return nil
	}
	secs, recs := m.fsyncSeconds.WithLabelValues(log), m.fsyncRecords.WithLabelValues(log)
	return func(d time.Duration, records int) {
		secs.Observe(d.Seconds())
		recs.Observe(float64(records))
	}
}

// forgetLog drops the fsync series of a deleted stream's log.
func (m *metrics) forgetLog(log string) {
	if m != nil {
		m.fsyncSeconds.DeleteLabelValues(log)
		m.fsyncRecords.DeleteLabelValues(log)
	}
}

// confirmObserver returns the publish-to-confirm histogram, nil when
// metrics are off.
func (m *metrics) confirmObserver() prometheus.Observer {
	if m == nil {
		return nil
	}
	return m.confirm
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descQueuePublished, descQueueDelivered, descQueueRedelivered, descQueueAcked, descQueueNacked,
		descQueueDeadLettered, descQueueDropped, descQueueExpired, descQueueRejected,
		descQueueDepth, descQueueInFlight, descQueueDelayed, descQueueDLQDepth,
		descTopicPublished, descTopicSubscribers, descTopicRejected, descStreamAppended, descStreamRejected, descStreamLag,
	} {
		ch <- d
	}
	m.fsyncSeconds.Describe(ch)
	m.fsyncRecords.Describe(ch)
	m.confirm.Describe(ch)
}

// Collect implements prometheus.Collector: it reads the counters and the
// current state of every queue, topic and stream. Each queue is locked only
// long enough to read its sizes.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.fsyncSeconds.Collect(ch)
	m.fsyncRecords.Collect(ch)
	m.confirm.Collect(ch)
	m.collectQueues(ch)
	m.collectTopics(ch)
	m.collectStreams(ch)
}

func (m *metrics) collectQueues(ch chan<- prometheus.Metric) {
	type sizes struct {
		q                        *queue
		dl                       string
		total, inFlight, delayed int
	}
	qs := m.b.queueList()
	all := make(map[string]sizes, len(qs))
	for _, q := range qs {
		q.mu.Lock()
		all[q.name] = sizes{q: q, dl: q.cfg.DeadLetter, total: q.countLocked(), inFlight: q.inflight.Len(), delayed: q.delayed.Len()}
		q.mu.Unlock()
	}
	counter := func(d *prometheus.Desc, v *atomic.Uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v.Load()), labels...)
	}
	gauge := func(d *prometheus.Desc, v int, name string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), name)
	}
	for name, s := range all {
		st := &s.q.stats
		counter(descQueuePublished, &st.published, name)
		counter(descQueueDelivered, &st.delivered, name)
		counter(descQueueRedelivered, &st.redelivered, name)
		counter(descQueueAcked, &st.acked, name)
		counter(descQueueNacked, &st.nacked, name)
		counter(descQueueDeadLettered, &st.deadLettered, name)
		counter(descQueueDropped, &st.dropped, name)
		counter(descQueueExpired, &st.expired, name)
		counter(descQueueRejected, &st.full, name, "queue_full")
		counter(descQueueRejected, &st.tooLarge, name, "too_large")
		gauge(descQueueDepth, s.total-s.inFlight-s.delayed, name)
		gauge(descQueueInFlight, s.inFlight, name)
		gauge(descQueueDelayed, s.delayed, name)
		if dl, ok := all[s.dl]; ok && s.dl != broker.NoDeadLetter {
			gauge(descQueueDLQDepth, dl.total, name)
		}
	}
}

func (m *metrics) collectTopics(ch chan<- prometheus.Metric) {
	m.b.mu.RLock()
	ts := make([]*topic, 0, len(m.b.topics))
	for _, t := range m.b.topics {
		ts = append(ts, t)
	}
	m.b.mu.RUnlock()
	for _, t := range ts {
		t.mu.Lock()
		published, subs := t.next, len(t.subs)
		t.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(descTopicPublished, prometheus.CounterValue, float64(published), t.name)
		ch <- prometheus.MustNewConstMetric(descTopicSubscribers, prometheus.GaugeValue, float64(subs), t.name)
		ch <- prometheus.MustNewConstMetric(descTopicRejected, prometheus.CounterValue, float64(t.tooLarge.Load()), t.name, "too_large")
	}
}

func (m *metrics) collectStreams(ch chan<- prometheus.Metric) {
	m.b.mu.RLock()
	ss := make([]*stream, 0, len(m.b.streams))
	for _, s := range m.b.streams {
		ss = append(ss, s)
	}
	m.b.mu.RUnlock()
	for _, s := range ss {
		first, last := s.log.FirstSeq(), s.log.DurableSeq()
		ch <- prometheus.MustNewConstMetric(descStreamAppended, prometheus.CounterValue, float64(last-s.base), s.name)
		ch <- prometheus.MustNewConstMetric(descStreamRejected, prometheus.CounterValue, float64(s.tooLarge.Load()), s.name, "too_large")
		s.mu.Lock()
		for g, committed := range s.groups {
			ch <- prometheus.MustNewConstMetric(descStreamLag, prometheus.GaugeValue, float64(groupLag(first, last, committed)), s.name, g)
		}
		s.mu.Unlock()
	}
}

// groupLag is how many durable messages of a stream holding offsets
// first..last (0, 0 when empty) a group that committed offset committed
// (the next it reads) has not committed; offsets deleted by retention do
// not count.
func groupLag(first, last, committed uint64) uint64 {
	next := max(committed, first)
	if last == 0 || next > last {
		return 0
	}
	return last - next + 1
}
