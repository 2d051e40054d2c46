package jetstream

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// refAckMeta is nats.go's parsing of an ack subject (internal/parser's
// GetMetadataFields and ParseNum, v1.56.0) written out token by token:
// what ackMeta must agree with.
func refAckMeta(subject string) (delivered uint64, ts int64, ok bool) {
	toks := strings.Split(subject, ".")
	if len(toks) < 9 || (len(toks) > 9 && len(toks) < 11) || !strings.HasPrefix(subject, "$JS.ACK.") {
		return 0, 0, false
	}
	if len(toks) == 9 { // v1: no domain and account hash
		toks = append(toks[:2], append([]string{"", ""}, toks[2:]...)...)
	}
	num := func(d string) (n uint64) {
		for _, r := range d {
			if r < '0' || r > '9' {
				return 0
			}
			n = n*10 + uint64(r) - '0'
		}
		return n
	}
	return num(toks[6]), int64(num(toks[9])), true
}

var ackSubjects = []string{
	"$JS.ACK.SYQ_q.sy.1.42.7.1733380000123456789.0",                         // v1
	"$JS.ACK._.ACCHASH.SYQ_q.sy.3.42.7.1733380000123456789.5.rAnd0m",        // v2
	"$JS.ACK.dom.ACCHASH.SYQ_q.sy.3.42.7.1733380000123456789.5.rAnd0m.more", // v2 with more tokens
	"$JS.ACK.dom.ACCHASH.SYQ_q.sy.2.42.7.1733380000123456789.5",             // 11 tokens
	// Attacker and malformed cases: too few tokens, 10 tokens, another
	// prefix, non-digits, signs, overflow, empty tokens, non-ASCII.
	"", ".", "$JS.ACK", "$JS.ACK.", "$JS.ACK.a.b.c.d.e.f.g",
	"$JS.ACK.a.b.1.2.3.4.5.6", "$JS.ACKX.a.b.1.2.3.4.5", "$js.ack.a.b.1.2.3.4.5",
	"$JS.ACK.a.b.-1.2.3.4.5", "$JS.ACK.a.b.+1.2.3.4.5", "$JS.ACK.a.b.1x.2.3.4.5",
	"$JS.ACK.a.b.99999999999999999999999.2.3.99999999999999999999999.5",
	"$JS.ACK.........", "$JS.ACK.a.b.١.2.3.٤.5", "$JS.ACK.a.b.\xff.2.3.4.5",
	"x$JS.ACK.a.b.1.2.3.4.5", "$JS.ACK.a.b.1.2.3.4.5.",
}

func checkAckMeta(t *testing.T, s string) {
	d, p, ok := ackMeta(s)
	rd, rts, rok := refAckMeta(s)
	if ok != rok || (ok && (d != rd || p.UnixNano() != rts)) {
		t.Fatalf("ackMeta(%q) = %d, %d, %v; nats.go's parsing gives %d, %d, %v", s, d, p.UnixNano(), ok, rd, rts, rok)
	}
}

func TestAckMeta(t *testing.T) {
	for _, s := range ackSubjects {
		checkAckMeta(t, s)
	}
	d, p, ok := ackMeta(ackSubjects[1])
	if !ok || d != 3 || p.UnixNano() != 1733380000123456789 {
		t.Fatalf("v2 subject: %d %v %v", d, p, ok)
	}
	if n := testing.AllocsPerRun(100, func() { ackMeta(ackSubjects[1]) }); n != 0 {
		t.Errorf("ackMeta allocates %v times", n)
	}
}

func FuzzAckMeta(f *testing.F) {
	for _, s := range ackSubjects {
		f.Add(s)
	}
	f.Fuzz(checkAckMeta)
}

// On a real server ackMeta reads what nats.go's Metadata reads, for a
// first delivery and a redelivery.
func TestAckMetaLive(t *testing.T) {
	u := os.Getenv("SWITCHYARD_NATS_URL")
	if u == "" {
		u = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(u, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("NATS at %s (set SWITCHYARD_NATS_URL): %v", u, err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	name := fmt.Sprintf("ACKMETA_%d", time.Now().UnixNano())
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: name, Subjects: []string{name}, Storage: natsjs.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	defer js.DeleteStream(context.Background(), name)
	if _, err := js.Publish(ctx, name, []byte("x")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, name, natsjs.ConsumerConfig{Durable: "c", AckPolicy: natsjs.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 2; want++ {
		batch, err := cons.Fetch(1, natsjs.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var m natsjs.Msg
		for m = range batch.Messages() {
			break
		}
		if m == nil {
			t.Fatalf("delivery %d: nothing fetched: %v", want, batch.Error())
		}
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		d, p, ok := ackMeta(m.Reply())
		if !ok || d != meta.NumDelivered || d != want || !p.Equal(meta.Timestamp) {
			t.Fatalf("ackMeta(%q) = %d, %v, %v; Metadata: %d, %v", m.Reply(), d, p, ok, meta.NumDelivered, meta.Timestamp)
		}
		m.Nak()
	}
}

// BenchmarkAckMeta is the per-message cost of reading the delivery count
// and publish time (needed before the handler, for the dead-letter
// check) from the ack subject; nats.go's Msg.Metadata parses the same
// subject but allocates its MsgMetadata and token slice per call.
func BenchmarkAckMeta(b *testing.B) {
	const s = "$JS.ACK._.ACCHASH.SYQ_bench-1733380000.sy.1.184467.184467.1733380000123456789.255.rAnd0m"
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := ackMeta(s); !ok {
			b.Fatal("not an ack subject")
		}
	}
}
