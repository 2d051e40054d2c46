package server

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/broker/wire"
)

func sumOf(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(s[:])
}

// reloadBroker runs a broker whose users reload when the test sends on
// the returned channel; each stderr line arrives on lines.
func reloadBroker(t *testing.T, file string) (httpAddr, nativeAddr string, reload chan<- struct{}, lines <-chan string) {
	t.Helper()
	rc := make(chan struct{})
	errw := make(lineWriter, 64)
	h, n := startBrokerErr(t, Options{ConfigFile: file, Reload: rc}, errw)
	return h, n, rc, errw
}

// nextLine waits for the broker's next stderr line.
func nextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l := <-lines:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no line on stderr")
	}
	return ""
}

// rawLogin opens a native connection logged in with a token, without the
// client library (which would reconnect): the test sees what the server
// does to it.
func rawLogin(t *testing.T, addr, token string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.Write(wire.AppendFrame(nil, wire.Auth, 1, wire.AppendAuthReq(nil, &wire.AuthReq{Method: wire.AuthToken, Secret: []byte(token)})))
	if typ, body := readFrame(t, nc); typ != wire.AuthOK {
		t.Fatalf("login: frame %#x %q", typ, body)
	}
	return nc
}

// Credential rotation without a restart, on both protocols: a bad file
// is refused naming file, line and key, and the old users keep working;
// a grant takes effect on open connections' next request; a push
// subscription and an event stream that lost consume are ended; a
// removed user's and a removed token's native connections are closed at
// once, and their HTTP requests get 401.
func TestReloadCredentials(t *testing.T) {
	const (
		readerTok1 = "reader-token-one-0123456789"
		readerTok2 = "reader-token-two-0123456789"
		opsTok     = "ops-token-0123456789"
	)
	h, err := bcrypt.GenerateFromPassword([]byte(writerPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "broker.yaml")
	write := func(users string) {
		cfg := "queues:\n  orders.eu: {}\n  orders.us: {}\n  audit: {}\ntopics:\n  orders.events: {}\nauth:\n  users:\n" + users
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writer := func(publish string) string {
		return fmt.Sprintf("    writer:\n      password_hash: %q\n      publish: [%s]\n", h, publish)
	}
	reader := func(tok, consume string) string {
		return fmt.Sprintf("    reader:\n      tokens: [%s]\n      consume: [%s]\n", sumOf(tok), consume)
	}
	ops := fmt.Sprintf("    ops:\n      tokens: [%s]\n      publish: [\"*\"]\n      consume: [\"*\"]\n      manage: [\"*\"]\n", sumOf(opsTok))
	write(writer("queue:orders.*") + reader(readerTok1, "queue:orders.*, topic:orders.events") + ops)
	httpAddr, addr, reload, lines := reloadBroker(t, file)
	base := "http://" + httpAddr
	ctx := testCtx(t)

	w, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{User: "writer", Password: writerPass}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	hw := &client.HTTP{Base: base, Credentials: client.Credentials{User: "writer", Password: writerPass}}
	if _, err := w.Publish(ctx, "audit", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("writer to audit before the grant: %v", err)
	}
	r, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{Token: readerTok1}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	subEnded := make(chan error, 1)
	got := make(chan broker.Delivery, 4)
	go func() {
		subEnded <- r.Subscribe(ctx, "orders.eu", client.SubscribeOptions{}, func(d broker.Delivery) { got <- d })
	}()
	if _, err := w.Publish(ctx, "orders.eu", broker.Message{Body: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if string(d.Body) != "before" {
			t.Fatalf("delivery %q", d.Body)
		}
	case <-ctx.Done():
		t.Fatal("the reader's subscription got nothing")
	}
	// An event stream of the reader's on the topic.
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/topics/orders.events/events", nil)
	req.Header.Set("Authorization", "Bearer "+readerTok1)
	sse, err := http.DefaultClient.Do(req)
	if err != nil || sse.StatusCode != 200 {
		t.Fatalf("events: %v %v", sse, err)
	}
	defer sse.Body.Close()
	events := bufio.NewReader(sse.Body)
	if l, _ := events.ReadString('\n'); l != ": subscribed\n" {
		t.Fatalf("events start %q", l)
	}
	opsConn := rawLogin(t, addr, opsTok)
	rRaw := rawLogin(t, addr, readerTok1)

	// 1. A bad file: refused with file, line and key; nothing changes.
	write(fmt.Sprintf("    writer:\n      password_hash: hunter2\n      publish: [\"*\"]\n") + reader(readerTok1, "queue:orders.*") + ops)
	reload <- struct{}{}
	line := nextLine(t, lines)
	if want := file + `:10:7: auth.users.writer.password_hash: not a bcrypt hash`; !strings.Contains(line, "reload refused, the users loaded before stay") || !strings.Contains(line, want) {
		t.Fatalf("bad reload said %q, want %q", line, want)
	}
	if strings.Contains(line, readerTok1) {
		t.Fatal("the reload error shows a token")
	}
	if _, err := w.Publish(ctx, "orders.eu", broker.Message{Body: []byte("still")}); err != nil {
		t.Fatalf("writer after a refused reload: %v", err)
	}
	if _, err := hw.Publish(ctx, "orders.eu", broker.Message{Body: []byte("still")}); err != nil {
		t.Fatalf("HTTP writer after a refused reload: %v", err)
	}

	// 2. Writer gains audit; reader narrows to orders.us (losing
	// orders.eu and the topic).
	write(writer("queue:orders.*, queue:audit") + reader(readerTok1, "queue:orders.us") + ops)
	reload <- struct{}{}
	if line := nextLine(t, lines); !strings.Contains(line, "reloaded 3 users") || !strings.Contains(line, "ended 1 subscriptions") {
		t.Fatalf("reload said %q", line)
	}
	if _, err := w.Publish(ctx, "audit", broker.Message{Body: []byte("granted")}); err != nil {
		t.Fatalf("writer's open connection after the grant: %v", err)
	}
	if _, err := hw.Publish(ctx, "audit", broker.Message{Body: []byte("granted")}); err != nil {
		t.Fatalf("HTTP writer after the grant: %v", err)
	}
	select {
	case err := <-subEnded:
		if !errors.Is(err, broker.ErrForbidden) {
			t.Fatalf("the subscription ended with %v, want forbidden", err)
		}
	case <-ctx.Done():
		t.Fatal("the reader's subscription to orders.eu went on after consume was withdrawn")
	}
	if _, err := r.Receive(ctx, "orders.us", broker.ReceiveOptions{Max: 1}); err != nil {
		t.Fatalf("reader's connection stays for what it may still do: %v", err)
	}
	if _, err := r.Receive(ctx, "orders.eu", broker.ReceiveOptions{Max: 1}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("reader receive from orders.eu after the reload: %v", err)
	}
	hops := &client.HTTP{Base: base, Credentials: client.Credentials{Token: opsTok}}
	if _, err := hops.PublishTopic(ctx, "orders.events", broker.Message{Body: []byte("e")}); err != nil {
		t.Fatal(err)
	}
	var ev strings.Builder
	for !strings.Contains(ev.String(), "\n\n") || !strings.Contains(ev.String(), "data:") {
		l, err := events.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v after %q", err, ev.String())
		}
		ev.WriteString(l)
	}
	if s := strings.TrimLeft(ev.String(), "\n"); !strings.HasPrefix(s, "event: error\n") || !strings.Contains(s, `"reason":"forbidden"`) || !strings.Contains(s, `no consume permission on topic \"orders.events\"`) {
		t.Fatalf("event stream after the reload: %q", s)
	}

	// 3. Ops removed, the reader's token rotated.
	write(writer("queue:orders.*") + reader(readerTok2, "queue:orders.*"))
	reload <- struct{}{}
	if line := nextLine(t, lines); !strings.Contains(line, "reloaded 2 users") || !strings.Contains(line, "closed 3 native connections") {
		t.Fatalf("reload said %q", line)
	}
	for name, nc := range map[string]net.Conn{"ops": opsConn, "reader": rRaw} {
		typ, body := readFrame(t, nc)
		e, err := wire.DecodeErr(body)
		if typ != wire.Err || err != nil || e.Code != broker.CodeUnauthorized || !strings.Contains(e.Message, "revoked by a reload") {
			t.Fatalf("%s's connection: frame %#x %+v %v", name, typ, e, err)
		}
		expectClosed(t, nc, 5*time.Second)
	}
	if _, err := hops.Publish(ctx, "audit", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrUnauthorized) {
		t.Fatalf("removed user over HTTP: %v", err)
	}
	old := &client.HTTP{Base: base, Credentials: client.Credentials{Token: readerTok1}}
	if _, err := old.Receive(ctx, "orders.eu", broker.ReceiveOptions{Max: 1}); !errors.Is(err, broker.ErrUnauthorized) {
		t.Fatalf("rotated-out token over HTTP: %v", err)
	}
	if _, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{Token: readerTok1}}); !errors.Is(err, broker.ErrUnauthorized) {
		t.Fatalf("rotated-out token over native: %v", err)
	}
	r2, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{Token: readerTok2}})
	if err != nil {
		t.Fatalf("the new token: %v", err)
	}
	defer r2.Close()
	if _, err := r2.Receive(ctx, "orders.eu", broker.ReceiveOptions{Max: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Publish(ctx, "audit", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("writer after audit was withdrawn: %v", err)
	}
}
