// Package jetstream is the kit/message backend on NATS JetStream, for
// services that outgrow one broker machine. Importing it registers the
// "nats" scheme: message.Open(ctx, "nats://127.0.0.1:4222").
//
// How switchyard's model maps onto JetStream (NAME is the kit's name;
// in stream names '_' is written "__" and '.' "_d", so every kit name
// has its own stream):
//
//   - queue NAME: a stream SYQ_NAME with work-queue retention on subject
//     syq.NAME and a 2-minute duplicate window (Nats-Msg-Id carries
//     broker.Message.ID, as the broker's dedup window), read through one
//     shared durable pull consumer "sy" (competing consumers). The
//     queue's settings (visibility, max deliveries, dead-letter queue)
//     are kept in the stream's description.
//   - topic NAME: the core NATS subject syt.NAME. A subscription without
//     a group is a core NATS subscription: live, at most once. Declare
//     makes a stream SYT_NAME on the subject with interest retention
//     (kept until every durable group acked it, nothing kept without
//     groups), and a subscription with a group is the durable consumer of
//     that name (DeliverNew when first made; a queue's acks, redelivery
//     and dead-letter queue NAME.GROUP.dlq). Publishing to a declared
//     topic is confirmed once the stream stored it; to an undeclared one
//     (no stream, checked again after 2s) it is a core publish, not an
//     error. Delete removes the stream and its groups.
//   - stream NAME: a stream SYS_NAME with limits retention on subject
//     sys.NAME; a group is a durable consumer of that name, acked per
//     message (Nack redelivers).
//
// What switchyard's broker does natively and this adapter builds on
// JetStream's primitives:
//
//   - Dead-letter queue: the consumer has no MaxDeliver (JetStream would
//     only stop redelivering, leaving the message in the stream, and
//     publish an advisory); instead the adapter counts deliveries
//     (NumDelivered). A Nack of a message at the queue's max deliveries,
//     and a delivery beyond it (its visibility ran out that many times),
//     publish the message to the dead-letter queue's stream (created with
//     the queue by Declare, or on demand) with the broker's x-dead-letter-reason, x-original-queue
//     and x-deliveries headers and its own id as Nats-Msg-Id (or, without
//     one, "dlq:STREAM:SEQ"), so a crash in between does not duplicate it,
//     then ack it.
//   - Delayed messages: a message published with Delay carries a
//     Sy-Deliver-At header; delivered early, the adapter naks it with the
//     remaining delay (NakWithDelay) instead of handing it out. That
//     early delivery is counted by JetStream; the adapter subtracts one
//     from Deliveries of a delayed message delivered more than once, which
//     undercounts by one when no consumer was running during the delay
//     (one extra delivery before dead-lettering, never one fewer).
//   - Message TTL: Sy-Expires; an expired message is dead-lettered with
//     reason "expired" when it is delivered.
//   - A message's own headers named like the adapter's (Sy-Key,
//     Sy-Deliver-At, Sy-Expires, Sy-No-Id, in any case) or JetStream's
//     (Nats-*: Nats-Msg-Id, Nats-Rollup, Nats-Expected-...) are not
//     published: headers copied from outside input could otherwise
//     expire, hold back or deduplicate messages.
//   - Redrive: publish a dead letter back to its x-original-queue (the
//     kit's DeadLetter middleware and this adapter write it alike).
//
// Other differences: JetStream does not hold back a message behind an
// earlier one with the same key, so Features().KeyOrder is false (use one
// consumer with Prefetch 1, or a subject per key, where order matters);
// Ack is sent without waiting for the server's confirmation (a lost ack
// means a redelivery); AckAsync's from other goroutines than the
// subscription's (the Router's workers) up to a millisecond later,
// together with the others given meanwhile (Close sends those of running
// subscriptions first; one given after its Subscribe returned and not
// yet sent when the backend closes is lost: redelivered after AckWait,
// its done hears the error); a publish is confirmed once the stream stored the
// message (its durability is the server's sync setting, 2 minutes by
// default, where switchyard fsyncs before it confirms).
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/message"
)

func init() {
	message.Register("nats", func(ctx context.Context, u *url.URL) (message.Backend, error) {
		if u.Host == "" {
			return nil, fmt.Errorf("%w: nats URL %q: want nats://HOST:PORT", broker.ErrInvalid, u.String())
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("%w: nats URL %q: unexpected path %q", broker.ErrInvalid, u.String(), u.Path)
		}
		return Dial(ctx, u.String())
	})
}

// Headers the adapter writes on JetStream messages.
const (
	HeaderKey       = "Sy-Key"        // broker.Message.Key
	HeaderDeliverAt = "Sy-Deliver-At" // deliver no earlier than this (Unix ns)
	HeaderExpires   = "Sy-Expires"    // expire at this (Unix ns)
)

// headerNoID marks a Nats-Msg-Id the adapter made up (for a dead letter
// of a message without an id): it is not the message's ID.
const headerNoID = "Sy-No-Id"

// consumerName is the durable consumer every subscriber of a queue shares.
const consumerName = "sy"

// Backend is a message.Backend and message.Declarer over one NATS
// connection. Safe for concurrent use.
type Backend struct {
	nc *nats.Conn
	js natsjs.JetStream

	mu       sync.Mutex
	settings map[string]queueSettings // by stream name; filled by Declare and Subscribe
	// topics: by topic name, zero for a topic with a stream, else when
	// its absence is to be checked again.
	topics map[string]time.Time
	// ackQueues are the running queue subscriptions' queued acks, sent
	// by Close.
	ackQueues map[*ackQueue]struct{}
}

var (
	_ message.Backend  = (*Backend)(nil)
	_ message.Declarer = (*Backend)(nil)
)

// Dial connects to the NATS server at url ("nats://HOST:PORT"), which
// must have JetStream enabled.
func Dial(ctx context.Context, url string) (*Backend, error) {
	opts := []nats.Option{nats.Name("switchyard kit/message")}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, fmt.Errorf("connecting to NATS %s: %w", url, context.DeadlineExceeded)
		}
		opts = append(opts, nats.Timeout(left))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS %s: %w", url, err)
	}
	b, err := New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}

// New returns a backend over an open connection; Close closes it.
func New(nc *nats.Conn) (*Backend, error) {
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	return &Backend{nc: nc, js: js, settings: map[string]queueSettings{}, topics: map[string]time.Time{},
		ackQueues: map[*ackQueue]struct{}{}}, nil
}

// JetStream returns the JetStream handle, for what the kit does not cover.
func (b *Backend) JetStream() natsjs.JetStream { return b.js }

// Features implements messagetest's probe: no key order (see the package
// doc), durable topic groups.
func (b *Backend) Features() message.Features { return message.Features{DurableTopicGroups: true} }

// Close closes the connection, after sending the acks that running
// subscriptions queued (AckAsync); messages not yet settled come back
// after their visibility timeout.
func (b *Backend) Close() error {
	b.mu.Lock()
	qs := make([]*ackQueue, 0, len(b.ackQueues))
	for q := range b.ackQueues {
		qs = append(qs, q)
	}
	b.mu.Unlock()
	for _, q := range qs {
		q.send()
	}
	b.nc.Close()
	return nil
}

// encName maps a kit name to a stream-name part, one to one: '_' is
// written "__" and '.' "_d" (stream names may not contain '.').
func encName(name string) string {
	if !strings.ContainsAny(name, "_.") {
		return name
	}
	var s strings.Builder
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '_':
			s.WriteString("__")
		case '.':
			s.WriteString("_d")
		default:
			s.WriteByte(c)
		}
	}
	return s.String()
}

// streamOf returns the JetStream stream and subject of a queue or stream.
func streamOf(d message.Dest) (stream, subject string) {
	if d.Kind == message.Stream {
		return "SYS_" + encName(d.Name), "sys." + d.Name
	}
	return "SYQ_" + encName(d.Name), "syq." + d.Name
}

func topicSubject(name string) string { return "syt." + name }

// queueSettings are a queue's settings, kept in its stream's description.
type queueSettings struct {
	visibility    time.Duration
	maxDeliveries int
	deadLetter    string // a queue name, or broker.NoDeadLetter
}

const settingsPrefix = "switchyard-queue"

func settingsFor(name string, o message.DeclareOptions) queueSettings {
	s := queueSettings{visibility: o.Visibility, maxDeliveries: o.MaxDeliveries, deadLetter: o.DeadLetter}
	if s.visibility <= 0 {
		s.visibility = 30 * time.Second
	}
	if s.maxDeliveries <= 0 {
		s.maxDeliveries = 5
	}
	if s.deadLetter == "" {
		if strings.HasSuffix(name, ".dlq") {
			s.deadLetter = broker.NoDeadLetter
		} else {
			s.deadLetter = name + ".dlq"
		}
	}
	return s
}

func (s queueSettings) String() string {
	return fmt.Sprintf("%s visibility=%s max_deliveries=%d dead_letter=%s", settingsPrefix, s.visibility, s.maxDeliveries, s.deadLetter)
}

// parseSettings reads a stream description written by queueSettings.String;
// what it cannot read keeps the defaults for queue name.
func parseSettings(name, desc string) (queueSettings, error) {
	s := settingsFor(name, message.DeclareOptions{})
	f := strings.Fields(desc)
	if len(f) == 0 || f[0] != settingsPrefix {
		return s, fmt.Errorf("queue %q: stream description %q: not written by this adapter", name, desc)
	}
	var errs []error
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "visibility":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > broker.MaxVisibilityTimeout {
				errs = append(errs, fmt.Errorf("visibility %q: want a duration in (0, %s]", v, broker.MaxVisibilityTimeout))
				continue
			}
			s.visibility = d
		case "max_deliveries":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				errs = append(errs, fmt.Errorf("max_deliveries %q: want a positive integer", v))
				continue
			}
			s.maxDeliveries = n
		case "dead_letter":
			if v != broker.NoDeadLetter && !broker.ValidName(v) {
				errs = append(errs, fmt.Errorf("dead_letter %q: want a queue name or none", v))
				continue
			}
			s.deadLetter = v
		default:
			errs = append(errs, fmt.Errorf("unknown setting %q", k))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("queue %q: stream description %q: %w", name, desc, err)
	}
	return s, nil
}

// notFound turns JetStream's "nothing there" answers into broker.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, natsjs.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, natsjs.ErrStreamNotFound) || errors.Is(err, natsjs.ErrConsumerNotFound) {
		return fmt.Errorf("%w: %w", broker.ErrNotFound, err)
	}
	return err
}

// pubErr maps a publish error: JetStream's and NATS's size limits (the
// stream's max_msg_size, the server's max_payload) become
// broker.ErrTooLarge, as the broker's max_message_size, so that callers
// (the outbox relay parks such a message) tell a refusal for good from a
// passing failure; "nothing there" becomes broker.ErrNotFound.
func pubErr(err error) error {
	if errors.Is(err, natsjs.ErrStreamMessageExceedsMaximum) || errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("%w: %w", broker.ErrTooLarge, err)
	}
	return notFound(err)
}

// toNats builds the JetStream message for m.
func toNats(subject string, m broker.Message, now time.Time) *nats.Msg {
	nm := &nats.Msg{Subject: subject, Data: m.Body, Header: make(nats.Header, len(m.Headers)+4)}
	for k, v := range m.Headers {
		if !reservedHeader(k) {
			nm.Header[k] = []string{v}
		}
	}
	if m.ID != "" {
		nm.Header[natsjs.MsgIDHeader] = []string{m.ID}
	}
	if m.Key != "" {
		nm.Header[HeaderKey] = []string{m.Key}
	}
	if m.Delay > 0 {
		nm.Header[HeaderDeliverAt] = []string{strconv.FormatInt(now.Add(m.Delay).UnixNano(), 10)}
	}
	if m.TTL > 0 {
		nm.Header[HeaderExpires] = []string{strconv.FormatInt(now.Add(m.Delay+m.TTL).UnixNano(), 10)}
	}
	return nm
}

// reservedHeader reports whether a message header k would pose as one
// of the adapter's or JetStream's control headers once NATS
// canonicalizes it.
func reservedHeader(k string) bool {
	switch k = textproto.CanonicalMIMEHeaderKey(k); k {
	case HeaderKey, HeaderDeliverAt, HeaderExpires, headerNoID:
		return true
	}
	return strings.HasPrefix(k, "Nats-")
}

// fromNats returns the kit's message of a JetStream one; the adapter's
// own headers (Sy-*, Nats-Msg-Id) are not among the headers, which are
// nil if no other header is left (message.InitDelivery then shares one
// empty map: a map per message was one of the adapter's allocations).
func fromNats(nm natsjs.Msg) broker.Message {
	h := nm.Headers()
	m := broker.Message{Body: nm.Data()}
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		switch k {
		case natsjs.MsgIDHeader:
			m.ID = vs[0]
		case HeaderKey:
			m.Key = vs[0]
		case HeaderDeliverAt, HeaderExpires, headerNoID:
		default:
			if m.Headers == nil {
				m.Headers = make(map[string]string, len(h))
			}
			m.Headers[k] = vs[0]
		}
	}
	if len(h[headerNoID]) > 0 {
		m.ID = ""
	}
	return m
}

// Publish implements message.Publisher. Queue and stream messages are
// published asynchronously and awaited together, so a batch costs one
// round trip; each is confirmed once the stream stored it. Topic messages
// are published on the subject and flushed to the server.
func (b *Backend) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	d, err := message.ParseDest(dest)
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	msgs = broker.WithTraceContext(ctx, msgs) // the caller's span, for the consumer's
	now := time.Now()
	subject := ""
	if d.Kind == message.Topic {
		stored, err := b.topicStored(ctx, d)
		if err != nil {
			return fmt.Errorf("publishing to %s: %w", d, err)
		}
		if !stored {
			return b.publishLive(ctx, d, msgs, now)
		}
		subject = topicSubject(d.Name)
	} else {
		_, subject = streamOf(d)
	}
	err = b.publishStored(ctx, subject, msgs, now)
	if err != nil && d.Kind == message.Topic {
		// The topic's stream may have been deleted by another process (no
		// responders, or a timeout while live subscribers hear the
		// request): look it up again next time.
		b.mu.Lock()
		delete(b.topics, d.Name)
		b.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("publishing to %s: %w", d, err)
	}
	return nil
}

// publishLive publishes topic messages on core NATS and flushes them to
// the server: a topic without a stream (not declared), live subscribers
// only.
func (b *Backend) publishLive(ctx context.Context, d message.Dest, msgs []broker.Message, now time.Time) error {
	for _, m := range msgs {
		if err := b.nc.PublishMsg(toNats(topicSubject(d.Name), m, now)); err != nil {
			return fmt.Errorf("publishing to %s: %w", d, pubErr(err))
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("publishing %d messages to %s: %w", len(msgs), d, err)
	}
	return nil
}

// publishStored publishes msgs on subject through JetStream and returns
// once its stream stored them all.
func (b *Backend) publishStored(ctx context.Context, subject string, msgs []broker.Message, now time.Time) error {
	if len(msgs) == 1 {
		if _, err := b.js.PublishMsg(ctx, toNats(subject, msgs[0], now), natsjs.WithRetryAttempts(0)); err != nil {
			return pubErr(err)
		}
		return nil
	}
	futures := make([]natsjs.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		f, err := b.js.PublishMsgAsync(toNats(subject, m, now), natsjs.WithRetryAttempts(0))
		if err != nil {
			return pubErr(err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("message %d of %d: %w", i+1, len(msgs), pubErr(err))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// topicStream returns the JetStream stream of a declared topic.
func topicStream(name string) string { return "SYT_" + encName(name) }

// topicNoStreamTTL is how long the adapter trusts that a topic has no
// stream before it asks again: a topic declared by another process is
// stored (its stream captures the subject) but not confirmed meanwhile.
const topicNoStreamTTL = 2 * time.Second

// topicStored reports whether topic d has a stream (it was declared),
// from the cache or the server.
func (b *Backend) topicStored(ctx context.Context, d message.Dest) (bool, error) {
	b.mu.Lock()
	exp, ok := b.topics[d.Name]
	b.mu.Unlock()
	if ok && (exp.IsZero() || time.Now().Before(exp)) {
		return exp.IsZero(), nil
	}
	_, err := b.js.Stream(ctx, topicStream(d.Name))
	stored := err == nil
	if err != nil && !errors.Is(err, natsjs.ErrStreamNotFound) {
		return false, fmt.Errorf("looking up the stream %s of %s: %w", topicStream(d.Name), d, err)
	}
	b.mu.Lock()
	if stored {
		b.topics[d.Name] = time.Time{}
	} else {
		b.topics[d.Name] = time.Now().Add(topicNoStreamTTL)
	}
	b.mu.Unlock()
	return stored, nil
}

// Declare implements message.Declarer: a queue or stream is a JetStream
// stream (created, or its settings updated); a topic needs nothing.
func (b *Backend) Declare(ctx context.Context, dest string, opts message.DeclareOptions) error {
	d, err := message.ParseDest(dest)
	if err != nil {
		return err
	}
	if d.Kind == message.Topic {
		// Interest retention: the stream keeps a message until every
		// durable group acked it, and none when no group exists (live
		// subscribers read the subject on core NATS).
		stream := topicStream(d.Name)
		_, err := b.js.CreateOrUpdateStream(ctx, natsjs.StreamConfig{Name: stream, Subjects: []string{topicSubject(d.Name)},
			Storage: natsjs.FileStorage, Duplicates: 2 * time.Minute, Retention: natsjs.InterestPolicy,
			Description: "switchyard-topic"})
		if err != nil {
			return fmt.Errorf("declaring %s (stream %s): %w", d, stream, err)
		}
		b.mu.Lock()
		b.topics[d.Name] = time.Time{}
		b.mu.Unlock()
		return nil
	}
	if opts.Visibility < 0 || opts.Visibility > broker.MaxVisibilityTimeout || opts.MaxDeliveries < 0 ||
		(opts.DeadLetter != "" && opts.DeadLetter != broker.NoDeadLetter && !broker.ValidName(opts.DeadLetter)) {
		return fmt.Errorf("%w: declaring %s: settings %+v: want visibility in [0, %s], max deliveries >= 0, dead letter a queue name or none",
			broker.ErrInvalid, d, opts, broker.MaxVisibilityTimeout)
	}
	stream, subject := streamOf(d)
	cfg := natsjs.StreamConfig{Name: stream, Subjects: []string{subject}, Storage: natsjs.FileStorage, Duplicates: 2 * time.Minute}
	var s queueSettings
	if d.Kind == message.Queue {
		s = settingsFor(d.Name, opts)
		cfg.Retention = natsjs.WorkQueuePolicy
		cfg.Description = s.String()
	}
	if _, err := b.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("declaring %s (stream %s): %w", d, stream, err)
	}
	if d.Kind == message.Queue {
		b.mu.Lock()
		b.settings[stream] = s
		b.mu.Unlock()
		if s.deadLetter != broker.NoDeadLetter {
			if err := b.ensureQueue(ctx, s.deadLetter); err != nil {
				return fmt.Errorf("declaring %s: its dead-letter queue: %w", d, err)
			}
		}
	}
	return nil
}

// ensureQueue creates queue name with default settings unless it exists
// (a dead-letter queue, declared with the queue it serves so that it can
// be read at once, as the broker's).
func (b *Backend) ensureQueue(ctx context.Context, name string) error {
	d := message.Dest{Kind: message.Queue, Name: name}
	stream, subject := streamOf(d)
	s := settingsFor(name, message.DeclareOptions{})
	_, err := b.js.CreateStream(ctx, natsjs.StreamConfig{Name: stream, Subjects: []string{subject}, Storage: natsjs.FileStorage,
		Duplicates: 2 * time.Minute, Retention: natsjs.WorkQueuePolicy, Description: s.String()})
	if err != nil && !errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("creating %s (stream %s): %w", d, stream, err)
	}
	return nil
}

// Delete implements message.Declarer.
func (b *Backend) Delete(ctx context.Context, dest string) error {
	d, err := message.ParseDest(dest)
	if err != nil {
		return err
	}
	if d.Kind == message.Topic {
		// A topic never declared has no stream: nothing to delete.
		b.mu.Lock()
		delete(b.topics, d.Name)
		b.mu.Unlock()
		stream := topicStream(d.Name)
		if err := b.js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, natsjs.ErrStreamNotFound) {
			return fmt.Errorf("deleting %s (stream %s): %w", d, stream, err)
		}
		return nil
	}
	stream, _ := streamOf(d)
	if err := b.js.DeleteStream(ctx, stream); err != nil {
		return fmt.Errorf("deleting %s (stream %s): %w", d, stream, notFound(err))
	}
	b.mu.Lock()
	delete(b.settings, stream)
	b.mu.Unlock()
	return nil
}
