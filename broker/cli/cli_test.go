package cli

import (
	"bytes"
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

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
)

// testBroker is a real broker with its HTTP API on 127.0.0.1:0.
type testBroker struct {
	t    *testing.T
	b    *engine.Broker
	addr string // host:port
}

func newBroker(t *testing.T) *testBroker {
	t.Helper()
	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(b))
	t.Cleanup(func() { srv.Close(); b.Close() })
	return &testBroker{t: t, b: b, addr: strings.TrimPrefix(srv.URL, "http://")}
}

// result is what one command did.
type result struct {
	out, errOut string
	code        int
	err         error
}

// run runs `switchyard broker ARGS...` against the test broker with stdin.
func (tb *testBroker) run(stdin string, args ...string) result {
	tb.t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{args[0], "--server", tb.addr}, args[1:]...)
	err := Run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return result{out: out.String(), errOut: errOut.String(), code: ExitCode(err), err: err}
}

// must runs a command that must succeed.
func (tb *testBroker) must(stdin string, args ...string) result {
	tb.t.Helper()
	r := tb.run(stdin, args...)
	if r.code != 0 {
		tb.t.Fatalf("%v: exit %d: %v\nstderr: %s", args, r.code, r.err, r.errOut)
	}
	return r
}

func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestReceiveJSONAckPipeline is `publish`, then `receive --json | ack`:
// every message is acked, and the queue is empty afterwards.
func TestReceiveJSONAckPipeline(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "orders")
	r := tb.must("", "publish", "orders", `{"item":"book"}`, "--id", "order-1", "--key", "customer-7", "--header", "kind=created")
	if r.out != "published message 1 to queue orders (15 bytes)\n" {
		t.Fatalf("publish said %q", r.out)
	}
	r = tb.must("", "publish", "orders", "again", "--id", "order-1")
	if !strings.Contains(r.out, "duplicate of message 1") {
		t.Fatalf("duplicate publish said %q", r.out)
	}
	tb.must("second\nthird\n\n", "publish", "orders", "--lines")
	tb.must("from stdin", "publish", "orders")

	r = tb.must("", "receive", "orders", "--max", "10", "--json")
	msgs := jsonLines(t, r.out)
	if len(msgs) != 4 {
		t.Fatalf("received %d messages: %s", len(msgs), r.out)
	}
	m := msgs[0]
	if m["queue"] != "orders" || m["id"] != "1" || m["msg_id"] != "order-1" || m["key"] != "customer-7" ||
		m["body"] != `{"item":"book"}` || m["headers"].(map[string]any)["kind"] != "created" || m["receipt"] == "" {
		t.Fatalf("first message %v", m)
	}
	if msgs[1]["body"] != "second" || msgs[2]["body"] != "third" || msgs[3]["body"] != "from stdin" {
		t.Fatalf("bodies %v", msgs)
	}
	// The pipeline: the JSON lines name their queue, so ack needs none.
	r = tb.must(r.out, "ack")
	if !strings.Contains(r.errOut, "acked 4 messages in queue orders") {
		t.Fatalf("ack said %q", r.errOut)
	}
	info, _ := tb.b.Queue("orders")
	if info.Depth != 0 || info.InFlight != 0 {
		t.Fatalf("after ack: %+v", info)
	}
	// An empty pipeline (nothing received) is not an error.
	r = tb.must("", "receive", "orders", "--json")
	if r.out != "" {
		t.Fatalf("empty receive printed %q", r.out)
	}
	r = tb.must(r.out, "ack")
	if !strings.Contains(r.errOut, "nothing to ack") {
		t.Fatalf("empty ack said %q", r.errOut)
	}
	// Acking the same receipts again: each stale one is named, exit 1.
	r = tb.run(`{"queue":"orders","receipt":"1.1.1"}`+"\n", "ack")
	if r.code != 1 || !strings.Contains(r.err.Error(), "receipt 1.1.1") {
		t.Fatalf("stale ack: %d %v", r.code, r.err)
	}
	// Receipts as arguments and as plain lines.
	tb.must("x", "publish", "orders")
	tb.must("y", "publish", "orders")
	r = tb.must("", "receive", "orders", "--max", "2", "--json")
	msgs = jsonLines(t, r.out)
	tb.must("", "ack", "orders", msgs[0]["receipt"].(string))
	tb.must(msgs[1]["receipt"].(string)+"\n", "ack", "orders")
	if info, _ := tb.b.Queue("orders"); info.Depth != 0 || info.InFlight != 0 {
		t.Fatalf("after acks: %+v", info)
	}
	// A plain receipt on stdin without a queue is a usage error.
	if r := tb.run("1.9.1\n", "ack"); r.code != 2 || !strings.Contains(r.errOut, "without a queue") {
		t.Fatalf("receipt without queue: %d %s", r.code, r.errOut)
	}
}

func TestReceiveHumanBinaryAndAck(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "q")
	tb.must("\x00\x01\xff", "publish", "q")
	tb.must("", "publish", "q", "hello", "--header", "a: b")
	r := tb.must("", "receive", "q", "--max", "2", "--ack")
	if !strings.Contains(r.out, "q #1  receipt=1.1.1 deliveries=1 time=") ||
		!strings.Contains(r.out, "[binary body, 3 bytes, base64] AAH/\n") ||
		!strings.Contains(r.out, "  a: b\nhello\n") {
		t.Fatalf("human output:\n%s", r.out)
	}
	if !strings.Contains(r.errOut, "acked 2 messages in queue q") {
		t.Fatalf("stderr %q", r.errOut)
	}
	r = tb.must("", "receive", "q", "--json")
	if r.out != "" {
		t.Fatalf("after --ack the queue still has %q", r.out)
	}
	tb.must("\xfe", "publish", "q")
	r = tb.must("", "receive", "q", "--json", "--auto-ack")
	if m := jsonLines(t, r.out)[0]; m["body_base64"] != "/g==" || m["body"] != nil || m["receipt"] != nil {
		t.Fatalf("binary JSON %v", m)
	}
	r = tb.must("", "receive", "q")
	if !strings.Contains(r.errOut, "no messages in queue q") {
		t.Fatalf("empty receive: %q", r.errOut)
	}
}

func TestNackRedrive(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "jobs", "max_deliveries=1")
	tb.must("", "publish", "jobs", "work")
	r := tb.must("", "receive", "jobs", "--json")
	r = tb.must(r.out, "nack", "jobs")
	if !strings.Contains(r.errOut, "nacked 1 message in queue jobs") {
		t.Fatalf("nack said %q", r.errOut)
	}
	// max_deliveries 1: the message is now in jobs.dlq.
	waitFor(t, func() bool { i, _ := tb.b.Queue("jobs.dlq"); return i.Depth == 1 })
	r = tb.must("", "redrive", "jobs")
	if r.out != "moved 1 message from the dead-letter queue of jobs back to their queues\n" {
		t.Fatalf("redrive said %q", r.out)
	}
	r = tb.must("", "receive", "jobs", "--json")
	if m := jsonLines(t, r.out); len(m) != 1 || m[0]["body"] != "work" {
		t.Fatalf("after redrive: %s", r.out)
	}
	// nack --delay keeps the message back.
	tb.must("", "declare", "queue", "later")
	tb.must("", "publish", "later", "work")
	r = tb.must("", "receive", "later", "--json")
	r = tb.must(r.out, "nack", "--delay", "1h")
	if i, _ := tb.b.Queue("later"); i.Delayed != 1 {
		t.Fatalf("after nack --delay: %+v", i)
	}
	if r := tb.run("", "redrive", "nope"); r.code != 1 || !strings.Contains(r.err.Error(), `queue "nope" not found`) {
		t.Fatalf("redrive unknown: %d %v", r.code, r.err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTailAndPublishTopic(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "orders")
	tb.must("", "declare", "topic", "rides", "queues=orders")
	var out, errOut syncBuffer
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- Run(ctx, []string{"tail", "rides", "--count", "2", "--json", "--server", tb.addr}, strings.NewReader(""), &out, &errOut)
	}()
	// The subscription is live once the broker counts it.
	waitFor(t, func() bool { i, _ := tb.b.Topic("rides"); return i.Subscribers == 1 })
	r := tb.must("", "publish-topic", "rides", "ride 1", "--header", "kind=requested")
	if r.out != "published message 1 to topic rides: 1 live subscriber, 1 bound queue\n" {
		t.Fatalf("publish-topic said %q", r.out)
	}
	tb.must("ride 2", "publish-topic", "rides")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tail: %v (%s)", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tail did not stop after --count 2")
	}
	ms := jsonLines(t, out.String())
	if len(ms) != 2 || ms[0]["topic"] != "rides" || ms[0]["body"] != "ride 1" || ms[0]["headers"].(map[string]any)["kind"] != "requested" || ms[1]["body"] != "ride 2" {
		t.Fatalf("tail printed %s", out.String())
	}
	// Interrupting tail (Ctrl-C cancels the context) is a normal end.
	waitFor(t, func() bool { i, _ := tb.b.Topic("rides"); return i.Subscribers == 0 })
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() {
		done <- Run(ctx2, []string{"tail", "rides", "--server", tb.addr}, strings.NewReader(""), &out, &errOut)
	}()
	waitFor(t, func() bool { i, _ := tb.b.Topic("rides"); return i.Subscribers == 1 })
	cancel2()
	if err := <-done; err != nil {
		t.Fatalf("interrupted tail: %v", err)
	}
	if r := tb.run("", "tail", "nope"); r.code != 1 || !strings.Contains(r.err.Error(), `topic "nope" not found`) {
		t.Fatalf("tail unknown topic: %d %v", r.code, r.err)
	}
}

func TestStreamAppendRead(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "stream", "locations", "max_age=24h")
	r := tb.must("", "append", "locations", `{"driver":7}`, "--header", "src=gps")
	if r.out != "appended to stream locations at offset 1 (12 bytes)\n" {
		t.Fatalf("append said %q", r.out)
	}
	tb.must("{\"driver\":8}\n{\"driver\":9}\n", "append", "locations", "--lines")
	r = tb.must("", "read", "locations", "--from", "2", "--json")
	ms := jsonLines(t, r.out)
	if len(ms) != 2 || ms[0]["offset"] != 2.0 || ms[1]["body"] != `{"driver":9}` {
		t.Fatalf("read --from 2: %s", r.out)
	}
	r = tb.must("", "read", "locations")
	if !strings.Contains(r.out, "locations @1  time=") || !strings.Contains(r.out, "  src: gps\n{\"driver\":7}\n") {
		t.Fatalf("human read:\n%s", r.out)
	}
	// A group reads from its committed offset and commits what it printed.
	r = tb.must("", "read", "locations", "--group", "billing", "--max", "2", "--json")
	if ms := jsonLines(t, r.out); len(ms) != 2 || ms[0]["offset"] != 1.0 {
		t.Fatalf("group read: %s", r.out)
	}
	r = tb.must("", "read", "locations", "--group", "billing", "--no-commit", "--json")
	if ms := jsonLines(t, r.out); len(ms) != 1 || ms[0]["offset"] != 3.0 {
		t.Fatalf("group read 2: %s", r.out)
	}
	if info, _ := tb.b.Stream("locations"); info.Groups["billing"] != 3 {
		t.Fatalf("committed %v", info.Groups)
	}
	// --follow --count waits for new messages.
	done := make(chan result, 1)
	go func() { done <- tb.run("", "read", "locations", "--from", "end", "--follow", "--count", "1", "--json") }()
	waitFor(t, func() bool {
		tb.b.Append(context.Background(), "locations", broker.Message{Body: []byte("new")})
		select {
		case r = <-done:
			return true
		default:
			return false
		}
	})
	if r.code != 0 || !strings.Contains(r.out, `"body":"new"`) {
		t.Fatalf("follow: %d %v %s", r.code, r.err, r.out)
	}
	for _, bad := range [][]string{{"read", "locations", "--from", "soon"}, {"read", "locations", "--group", "g", "--from", "3"},
		{"read", "locations", "--max", "0"}, {"read"}} {
		if r := tb.run("", bad...); r.code != 2 {
			t.Fatalf("%v: exit %d, want 2", bad, r.code)
		}
	}
}

func TestLsInfoDeclareDeleteStatus(t *testing.T) {
	tb := newBroker(t)
	r := tb.must("", "ls")
	if !strings.Contains(r.errOut, "no queues, topics, streams") {
		t.Fatalf("empty ls: %q %q", r.out, r.errOut)
	}
	r = tb.must("", "declare", "queue", "orders", "max_length=10", "visibility_timeout=45s", "async_acks=true")
	if !strings.Contains(r.out, "declared queue orders") || !strings.Contains(r.out, "config.visibility_timeout: 45s") {
		t.Fatalf("declare said:\n%s", r.out)
	}
	if c, _ := tb.b.QueueConfig("orders"); c.MaxLength != 10 || !c.AsyncAcks {
		t.Fatalf("declared %+v", c)
	}
	tb.must("", "declare", "topic", "rides", "queues=orders")
	tb.must("", "declare", "stream", "locations")
	tb.must("", "publish", "orders", "x")
	tb.must("", "append", "locations", "x")
	r = tb.must("", "ls")
	for _, want := range []string{"KIND    NAME        MESSAGES  DETAILS",
		"queue   orders      1         in_flight=0 delayed=0 dead_lettered=0",
		"topic   rides       0         subscribers=0 queues=orders",
		"stream  locations   1         offsets=1..1"} {
		if !strings.Contains(r.out, want) {
			t.Fatalf("ls lacks %q:\n%s", want, r.out)
		}
	}
	r = tb.must("", "ls", "streams", "--json")
	if ms := jsonLines(t, r.out); len(ms) != 1 || ms[0]["kind"] != "stream" || ms[0]["messages"] != 1.0 {
		t.Fatalf("ls streams --json: %s", r.out)
	}
	r = tb.must("", "info", "orders", "--json")
	if ms := jsonLines(t, r.out); len(ms) != 1 || ms[0]["kind"] != "queue" || ms[0]["depth"] != 1.0 {
		t.Fatalf("info --json: %s", r.out)
	}
	r = tb.must("", "info", "topic", "rides")
	if !strings.Contains(r.out, "topic rides\n") || !strings.Contains(r.out, "config.queues:") {
		t.Fatalf("info topic:\n%s", r.out)
	}
	if r := tb.run("", "info", "nothing"); r.code != 1 || !strings.Contains(r.err.Error(), `no queue, topic or stream named "nothing"`) {
		t.Fatalf("info unknown: %d %v", r.code, r.err)
	}
	// Settings are checked before anything is sent.
	r = tb.run("", "declare", "queue", "orders", "max_delivery=3")
	if r.code != 2 || !strings.Contains(r.errOut, `unknown setting "max_delivery", did you mean "max_deliveries"?`) {
		t.Fatalf("typo: %d %s", r.code, r.errOut)
	}
	if r := tb.run("", "declare", "queue", "orders", "max_length=lots"); r.code != 2 || !strings.Contains(r.errOut, "max_length=lots: expected an integer") {
		t.Fatalf("bad int: %d %s", r.code, r.errOut)
	}
	// The broker's own checks come back as exit 1 with its words.
	if r := tb.run("", "declare", "queue", "orders", "overflow=drop"); r.code != 1 || !strings.Contains(r.err.Error(), `overflow "drop"`) {
		t.Fatalf("bad overflow: %d %v", r.code, r.err)
	}
	r = tb.must("", "status")
	if r.out != "broker at http://"+tb.addr+" is up: 2 queues, 1 topic, 1 stream\n" {
		t.Fatalf("status said %q", r.out)
	}
	r = tb.must("", "status", "orders", "1")
	if !strings.Contains(r.out, "state:") || !strings.Contains(r.out, "ready") {
		t.Fatalf("message status:\n%s", r.out)
	}
	r = tb.must("", "delete", "topic", "rides")
	if r.out != "deleted topic rides\n" {
		t.Fatalf("delete said %q", r.out)
	}
	if r := tb.run("", "delete", "topic", "rides"); r.code != 1 || !strings.Contains(r.err.Error(), `topic "rides" not found`) {
		t.Fatalf("delete again: %d %v", r.code, r.err)
	}
	if r := tb.run("", "delete", "rides"); r.code != 2 {
		t.Fatalf("delete without kind: %d", r.code)
	}
}

// TestErrorsAndExitCodes: unknown names are exit 1 naming what; a broker
// that is down is exit 1 naming the address; usage is exit 2.
func TestErrorsAndExitCodes(t *testing.T) {
	tb := newBroker(t)
	r := tb.run("", "receive", "rides")
	if r.code != 1 || r.err.Error() != `receive: queue "rides" not found` {
		t.Fatalf("unknown queue: %d %v", r.code, r.err)
	}
	if r := tb.run("x", "publish", "rides"); r.code != 1 || !strings.Contains(r.err.Error(), `queue "rides" not found`) {
		t.Fatalf("publish unknown: %d %v", r.code, r.err)
	}
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	for _, server := range []string{down, "http://" + down} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), []string{"status", "--server", server}, strings.NewReader(""), &out, &errOut)
		if ExitCode(err) != 1 || !strings.Contains(err.Error(), "cannot reach the broker at http://"+down) ||
			!strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("server down: %d %v", ExitCode(err), err)
		}
	}
	for _, args := range [][]string{
		{"publish"}, {"receive", "a", "b"}, {"receive", "q", "--max", "0"}, {"receive", "q", "--wait", "2m"},
		{"receive", "q", "--nope"}, {"status", "q"}, {"status", "q", "x"}, {"ls", "things"}, {"declare", "queue"},
		{"declare", "pipe", "x"}, {"publish", "q", "a", "b"}, {"publish", "q", "--header", "novalue"},
	} {
		if r := tb.run("", args...); r.code != 2 || !strings.Contains(r.errOut, "Usage: switchyard broker") {
			t.Fatalf("%v: exit %d (%v), stderr %q", args, r.code, r.err, r.errOut)
		}
	}
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"status", "--server", "ftp://x:1"}, nil, &out, &errOut); ExitCode(err) != 2 {
		t.Fatalf("bad --server: %v", err)
	}
	if err := Run(context.Background(), []string{"status", "--server", "localhost"}, nil, &out, &errOut); ExitCode(err) != 2 ||
		!strings.Contains(errOut.String(), "no port") {
		t.Fatalf("--server without port: %v %s", err, errOut.String())
	}
	if err := Run(context.Background(), []string{"receive", "--help"}, nil, &out, &errOut); ExitCode(err) != 0 {
		t.Fatalf("--help: %v", err)
	}
}

func TestParseInterspersed(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "q")
	// Flags after positionals, and "--" before a body that looks like a flag.
	tb.must("", "publish", "q", "--key", "k", "--", "-5")
	r := tb.must("", "receive", "--json", "q")
	if m := jsonLines(t, r.out)[0]; m["body"] != "-5" || m["key"] != "k" {
		t.Fatalf("got %v", m)
	}
}

// FuzzArgs feeds arbitrary text to the CLI's own parsers: settings,
// positions, server addresses, headers and ack's stdin lines. None may
// panic; a setting accepted is set.
func FuzzArgs(f *testing.F) {
	for _, s := range []string{"max_length=3", "visibility_timeout=1s", "queues=a,b", "x", "=", "async_acks=maybe",
		"2026-12-04T10:00:00Z", "end", "http://h:1", "{\"queue\":\"q\",\"receipt\":\"1.1.1\"}\n1.2.1\n", "k: v"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, cfg := range []any{&broker.QueueConfig{}, &broker.TopicConfig{}, &broker.StreamConfig{}} {
			_ = setField(cfg, s)
		}
		_, _ = parseFrom(s)
		if u, err := serverURL(s); err == nil && !strings.HasPrefix(u, "http") {
			t.Fatalf("serverURL(%q) = %q", s, u)
		}
		_ = headerFlag{}.Set(s)
		// ack's stdin parsing, without a broker: a server nobody answers
		// on port 1 (refused at once) or a usage error; never a panic.
		var out, errOut bytes.Buffer
		err := Run(context.Background(), []string{"ack", "--server", "127.0.0.1:1", "--timeout", "1s"}, strings.NewReader(s), &out, &errOut)
		if c := ExitCode(err); c != 0 && c != 1 && c != 2 {
			t.Fatalf("exit %d", c)
		}
	})
}

// TestNilStdinAndInterrupt: a caller without stdin publishes an empty
// body; an interrupted long poll says so.
func TestNilStdinAndInterrupt(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "q")
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"publish", "q", "--server", tb.addr}, nil, &out, &errOut); err != nil {
		t.Fatalf("nil stdin: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"receive", "empty", "--wait", "30s", "--server", tb.addr}, nil, &out, &errOut)
	}()
	tb.must("", "declare", "queue", "empty")
	cancel()
	if err := <-done; err == nil || (!strings.Contains(err.Error(), "interrupted") && !strings.Contains(err.Error(), "not found")) {
		t.Fatalf("interrupted receive: %v", err)
	}
}

// TestTimeoutSaysSo: a broker that accepts but never answers is reported
// as not answering within --timeout, naming the address.
func TestTimeoutSaysSo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	var out, errOut bytes.Buffer
	err = Run(context.Background(), []string{"status", "--server", ln.Addr().String(), "--timeout", "100ms"}, nil, &out, &errOut)
	if ExitCode(err) != 1 || !strings.Contains(err.Error(), "the broker at http://"+ln.Addr().String()+" did not answer within --timeout 100ms") {
		t.Fatalf("got %v", err)
	}
}

// TestNotABroker: --server pointed at another HTTP service (a gateway in
// front of echo backends answers 200 JSON to every path; the gateway's
// admin API answers /healthz but 404 to /v1/...) is exit 1 saying that
// the server is not a switchyard broker, never "up" or an empty listing.
func TestNotABroker(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"backend":"backend-1","method":%q,"path":%q,"status":200}`, r.Method, r.URL.Path)
	}))
	defer echo.Close()
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			fmt.Fprintln(w, "ok")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"code":"not_found","error":"no admin endpoint %s %s","status":"404"}`, r.Method, r.URL.Path)
	}))
	defer admin.Close()
	for _, srv := range []*httptest.Server{echo, admin} {
		for _, args := range [][]string{{"status"}, {"ls"}, {"ls", "topics"}, {"ls", "streams"}, {"publish", "q", "x"}} {
			var out, errOut bytes.Buffer
			err := Run(context.Background(), append(args, "--server", srv.URL), strings.NewReader(""), &out, &errOut)
			if ExitCode(err) != 1 || !strings.Contains(err.Error(), "not a switchyard broker") {
				t.Errorf("%v against %s: exit %d, err %v, stdout %q", args, srv.URL, ExitCode(err), err, out.String())
			}
		}
	}
}

// TestDurationWithoutUnit: a duration flag given a bare number (--wait 10)
// is a usage error that suggests the unit, not flag's "parse error".
func TestDurationWithoutUnit(t *testing.T) {
	for _, args := range [][]string{
		{"receive", "q", "--wait", "10"}, {"publish", "q", "x", "--delay", "10"}, {"publish", "q", "x", "--ttl", "10"},
		{"nack", "q", "r", "--delay", "10"}, {"read", "s", "--wait", "10"}, {"status", "--timeout", "10"},
		{"receive", "q", "--visibility", "10"},
	} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), append(args, "--server", "127.0.0.1:1"), strings.NewReader(""), &out, &errOut)
		if ExitCode(err) != 2 || !strings.Contains(errOut.String(), "no unit: did you mean 10s?") {
			t.Errorf("%v: exit %d, stderr %q", args, ExitCode(err), errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{"receive", "q", "--wait", "soon", "--server", "127.0.0.1:1"}, nil, &out, &errOut)
	if ExitCode(err) != 2 || !strings.Contains(errOut.String(), "want a duration like 500ms, 30s or 2m") {
		t.Errorf("--wait soon: exit %d, stderr %q", ExitCode(err), errOut.String())
	}
}

// TestWrongKindSaysWhichCommand: a queue command on a topic's or a
// stream's name (and the other way round) still fails with "not found",
// and says what the name is and which command fits it.
func TestWrongKindSaysWhichCommand(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "orders")
	tb.must("", "declare", "topic", "rides")
	tb.must("", "declare", "stream", "locations")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"receive", "rides"}, `queue "rides" not found (rides is a topic: switchyard broker tail rides)`},
		{[]string{"publish", "rides", "x"}, `(rides is a topic: switchyard broker publish-topic rides)`},
		{[]string{"receive", "locations"}, `(locations is a stream: switchyard broker read locations)`},
		{[]string{"publish", "locations", "x"}, `(locations is a stream: switchyard broker append locations)`},
		{[]string{"tail", "orders", "--count", "1"}, `(orders is a queue: switchyard broker receive orders)`},
		{[]string{"publish-topic", "orders", "x"}, `(orders is a queue: switchyard broker publish orders)`},
		{[]string{"read", "orders"}, `(orders is a queue: switchyard broker receive orders)`},
		{[]string{"append", "rides", "x"}, `(rides is a topic: switchyard broker publish-topic rides)`},
	} {
		r := tb.run("", tc.args...)
		if r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
			t.Errorf("%v: exit %d, err %v; want ~%q", tc.args, r.code, r.err, tc.want)
		}
	}
	// A name that is nothing stays a plain "not found".
	if r := tb.run("", "receive", "nothing"); r.code != 1 || r.err.Error() != `receive: queue "nothing" not found` {
		t.Errorf("unknown: %d %v", r.code, r.err)
	}
}

// bind and unbind change one binding of a topic and say what happened.
func TestBindUnbind(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "audit")
	tb.must("", "declare", "queue", "billing")
	tb.must("", "declare", "topic", "rides", "queues=audit")
	for _, c := range []struct {
		args []string
		out  string
	}{
		{[]string{"bind", "rides", "billing"}, "bound queue billing to topic rides\n"},
		{[]string{"bind", "rides", "billing"}, "queue billing was already bound to topic rides\n"},
		{[]string{"unbind", "rides", "audit"}, "unbound queue audit from topic rides\n"},
		{[]string{"unbind", "rides", "audit"}, "queue audit was not bound to topic rides\n"},
		{[]string{"bind", "--create", "rides", "rides.g1"}, "bound queue rides.g1 to topic rides\n"},
	} {
		if r := tb.must("", c.args...); r.out != c.out {
			t.Fatalf("%v said %q, want %q", c.args, r.out, c.out)
		}
	}
	if info, _ := tb.b.Topic("rides"); fmt.Sprint(info.Config.Queues) != "[billing rides.g1]" {
		t.Fatalf("bound %v", info.Config.Queues)
	}
	r := tb.must("", "bind", "--json", "rides", "billing")
	if m := jsonLines(t, r.out); len(m) != 1 || m[0]["bound"] != true || m[0]["changed"] != false {
		t.Fatalf("json: %q", r.out)
	}
	if r := tb.run("", "bind", "rides", "nope"); r.code != 1 || r.err == nil || !strings.Contains(r.err.Error(), `queue "nope"`) {
		t.Fatalf("missing queue: %+v", r)
	}
	if r := tb.run("", "bind", "rides"); r.code != 2 {
		t.Fatalf("one argument: %+v", r)
	}
}

// TestDeclareIfAbsent: `declare --if-absent` creates what is missing and
// leaves what exists untouched (settings, a topic's queues), saying
// "exists" and exiting 0, as PUT ?if_absent=1 and the clients'
// Declare*IfAbsent do; without the flag a declare replaces the settings.
func TestDeclareIfAbsent(t *testing.T) {
	tb := newBroker(t)
	r := tb.must("", "declare", "queue", "orders", "max_length=10", "--if-absent")
	if !strings.Contains(r.out, "declared queue orders") {
		t.Fatalf("first declare --if-absent said:\n%s", r.out)
	}
	r = tb.must("", "declare", "queue", "orders", "max_length=99", "--if-absent")
	if !strings.HasPrefix(r.out, "exists queue orders") {
		t.Fatalf("second declare --if-absent said:\n%s", r.out)
	}
	if c, _ := tb.b.QueueConfig("orders"); c.MaxLength != 10 {
		t.Fatalf("max_length %d after declare --if-absent of an existing queue, want 10 (untouched)", c.MaxLength)
	}
	tb.must("", "declare", "queue", "audit")
	tb.must("", "declare", "topic", "rides", "queues=orders,audit")
	r = tb.must("", "declare", "topic", "rides", "queues=orders", "--if-absent", "--json")
	if ms := jsonLines(t, r.out); len(ms) != 1 || ms[0]["kind"] != "topic" {
		t.Fatalf("declare topic --if-absent --json: %s", r.out)
	}
	r = tb.must("", "info", "topic", "rides")
	if !strings.Contains(r.out, "audit") {
		t.Fatalf("the topic lost queue audit to declare --if-absent:\n%s", r.out)
	}
	r = tb.must("", "declare", "stream", "locations", "max_age=1h", "--if-absent")
	if !strings.Contains(r.out, "declared stream locations") {
		t.Fatalf("declare stream --if-absent said:\n%s", r.out)
	}
	if r = tb.must("", "declare", "stream", "locations", "--if-absent"); !strings.HasPrefix(r.out, "exists stream locations") {
		t.Fatalf("second declare stream --if-absent said:\n%s", r.out)
	}
	// Without the flag the settings are replaced, as before.
	tb.must("", "declare", "queue", "orders", "max_length=99")
	if c, _ := tb.b.QueueConfig("orders"); c.MaxLength != 99 {
		t.Fatalf("max_length %d after a plain declare, want 99", c.MaxLength)
	}
	// Settings are still checked first.
	if r := tb.run("", "declare", "queue", "orders", "max_lenght=1", "--if-absent"); r.code != 2 {
		t.Fatalf("typo with --if-absent: exit %d, want 2", r.code)
	}
}

// TestRedriveKeptTopicDeadLetter: `redrive QUEUE` over a dead-letter
// queue holding a topic's dead letter (x-original-queue topic:NAME) among
// the queue's own moves the queue's, says how many stayed and why, and
// exits 1; --json gives both counts. Before, it stopped at the topic's
// message and moved nothing behind it.
func TestRedriveKeptTopicDeadLetter(t *testing.T) {
	tb := newBroker(t)
	tb.must("", "declare", "queue", "rides")
	tb.must("", "declare", "queue", "rides.dlq")
	tb.must("", "publish", "rides.dlq", "t1", "--header", "x-original-queue=topic:rides")
	tb.must("", "publish", "rides.dlq", "a", "--header", "x-original-queue=rides")
	r := tb.run("", "redrive", "rides")
	if r.code != 1 || r.out != "moved 1 message from the dead-letter queue of rides back to their queues\n" ||
		!strings.Contains(r.err.Error(), `kept 1 message(s) in "rides.dlq"`) || !strings.Contains(r.err.Error(), `"topic:rides"`) {
		t.Fatalf("redrive: %d %q %v", r.code, r.out, r.err)
	}
	r = tb.run("", "redrive", "rides", "--json")
	if m := jsonLines(t, r.out); r.code != 1 || len(m) != 1 || m[0]["moved"] != float64(0) || m[0]["kept"] != float64(1) || m[0]["first_kept"] != "topic:rides" {
		t.Fatalf("redrive --json: %d %q", r.code, r.out)
	}
	if i, _ := tb.b.Queue("rides"); i.Depth != 1 {
		t.Fatalf("rides %+v", i)
	}
}
