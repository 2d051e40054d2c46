package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/broker/wire"
)

const (
	writerPass  = "writer-password"
	readerToken = "reader-token-0123456789"
)

// authConfig is a broker config with three users: writer (password,
// publish orders.*), reader (token, consume orders.*), ops (certificate,
// everything). extra is appended (a tls: block, auth limits).
func authConfig(t *testing.T, authExtra, extra string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(writerPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(readerToken))
	// ops logs in by certificate when there is a client CA, else by token.
	opsSum := sha256.Sum256([]byte("ops-token-0123456789"))
	opsCred := "tokens: [sha256:" + hex.EncodeToString(opsSum[:]) + "]"
	if strings.Contains(extra, "client_ca") {
		opsCred = "certs: [ops-client]"
	}
	cfg := fmt.Sprintf(`queues:
  orders.eu: {}
  audit: {}
topics:
  orders.events: {}
streams:
  payments: {}
auth:
  users:
    writer:
      password_hash: %q
      publish: [queue:orders.*]
    reader:
      tokens: [sha256:%s]
      consume: [queue:orders.*]
    ops:
      %s
      publish: ["*"]
      consume: ["*"]
      manage: ["*"]
%s%s`, h, hex.EncodeToString(sum[:]), opsCred, authExtra, extra)
	file := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// startBroker runs a broker with the config file on loopback and returns
// its HTTP and native addresses; it stops with the test.
func startBroker(t *testing.T, o Options) (httpAddr, nativeAddr string) {
	t.Helper()
	return startBrokerErr(t, o, io.Discard)
}

// startBrokerErr is startBroker with the broker's stderr going to errw.
func startBrokerErr(t *testing.T, o Options, errw io.Writer) (httpAddr, nativeAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(lineWriter, 4)
	done := make(chan error, 1)
	if o.Data == "" {
		o.Data = t.TempDir()
	}
	if o.HTTP == "" {
		o.HTTP = "127.0.0.1:0"
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	stopped := make(chan struct{})
	go func() { done <- Run(ctx, o, out, errw); close(stopped) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("broker did not stop")
		}
	})
	select {
	case line := <-out:
		m := regexp.MustCompile(`http=(\S+) native=(\S+)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("startup line %q", line)
		}
		return m[1], m[2]
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no startup line")
	}
	return "", ""
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readFrame reads one frame off a raw connection.
func readFrame(t *testing.T, nc net.Conn) (wire.Type, []byte) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [9]byte
	if _, err := io.ReadFull(nc, h[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(h[:4])-5)
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatal(err)
	}
	return wire.Type(h[4]), body
}

// expectClosed waits for the server to close nc.
func expectClosed(t *testing.T, nc net.Conn, within time.Duration) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s", within)
	}
}

// An old client (no Auth frame) is refused with code unauthorized and
// its connection closed; a wrong password is refused; a writer may
// publish to orders.* but not consume, with the exact error; a consumer
// without a stream permission is refused the stream.
func TestNativeAuthAndPermissions(t *testing.T) {
	_, addr := startBroker(t, Options{ConfigFile: authConfig(t, "", "")})
	ctx := testCtx(t)

	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write(wire.AppendFrame(nil, wire.Pub, 7, wire.AppendPubReq(nil, &wire.PubReq{Queue: "orders.eu", Msgs: []broker.Message{{Body: []byte("x")}}})))
	typ, body := readFrame(t, nc)
	e, err := wire.DecodeErr(body)
	if typ != wire.Err || err != nil || e.Code != broker.CodeUnauthorized || !strings.Contains(e.Message, "the first frame must be Auth") {
		t.Fatalf("unauthenticated publish: frame %#x %+v %v", typ, e, err)
	}
	expectClosed(t, nc, 5*time.Second)

	if _, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{User: "writer", Password: "wrong"}}); !errors.Is(err, broker.ErrUnauthorized) {
		t.Fatalf("wrong password: %v, want ErrUnauthorized", err)
	} else if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("the error shows the password: %v", err)
	}
	if _, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{User: "nobody", Password: writerPass}}); !errors.Is(err, broker.ErrUnauthorized) {
		t.Fatalf("unknown user: %v", err)
	}

	w, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{User: "writer", Password: writerPass}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Publish(ctx, "orders.eu", broker.Message{Body: []byte("order 1")}); err != nil {
		t.Fatalf("writer publish to orders.eu: %v", err)
	}
	_, err = w.Receive(ctx, "orders.eu", broker.ReceiveOptions{Max: 1})
	if want := `forbidden: user "writer" has no consume permission on queue "orders.eu"`; !errors.Is(err, broker.ErrForbidden) || err.Error() != want {
		t.Fatalf("writer receive: %v, want %q", err, want)
	}
	if _, err := w.Publish(ctx, "audit", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("writer publish to audit: %v", err)
	}
	if err := w.DeclareQueue(ctx, "orders.new", broker.QueueConfig{}); err == nil || err.Error() != `forbidden: user "writer" has no manage permission on queue "orders.new"` {
		t.Fatalf("writer declare: %v", err)
	}
	// The connection survives refusals.
	if _, err := w.Publish(ctx, "orders.eu", broker.Message{Body: []byte("order 2")}); err != nil {
		t.Fatal(err)
	}

	r, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{Token: readerToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ds, err := r.Receive(ctx, "orders.eu", broker.ReceiveOptions{Max: 10, Wait: 5 * time.Second})
	if err != nil || len(ds) == 0 || string(ds[0].Body) != "order 1" {
		t.Fatalf("reader receive: %v %v", ds, err)
	}
	if _, err := r.Ack(ctx, "orders.eu", ds[0].Receipt); err != nil {
		t.Fatal(err)
	}
	_, err = r.ReadStream(ctx, "payments", client.FromStart(), broker.ReadOptions{Max: 1})
	if want := `forbidden: user "reader" has no consume permission on stream "payments"`; err == nil || err.Error() != want {
		t.Fatalf("reader read stream: %v, want %q", err, want)
	}
	if _, err := r.Append(ctx, "payments", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("reader append: %v", err)
	}
	if _, err := r.Publish(ctx, "orders.eu", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("reader publish: %v", err)
	}
	// Queue patterns do not reach topics of the same name.
	if _, err := r.SubscribeTopic(ctx, "orders.events", client.TopicOptions{}); err == nil || err.Error() != `forbidden: user "reader" has no consume permission on topic "orders.events"` {
		t.Fatalf("reader topic subscribe: %v", err)
	}
	if _, err := w.PublishTopic(ctx, "orders.events", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("writer topic publish: %v", err)
	}
	err = r.Subscribe(ctx, "audit", client.SubscribeOptions{}, func(broker.Delivery) {})
	if !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("reader push subscription to audit: %v", err)
	}
}

// The HTTP API: 401 with a challenge without a credential, Basic and
// Bearer per request, 403 naming the user, listings filtered.
func TestHTTPAuthAndPermissions(t *testing.T) {
	httpAddr, _ := startBroker(t, Options{ConfigFile: authConfig(t, "", "")})
	base := "http://" + httpAddr
	ctx := testCtx(t)

	resp, err := http.Post(base+"/v1/queues/orders.eu/messages", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer") || !strings.Contains(string(b), `"code":"unauthorized"`) {
		t.Fatalf("no credential: %s %q %s", resp.Status, resp.Header.Get("WWW-Authenticate"), b)
	}
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz stays open: %v %v", resp, err)
	}

	w := &client.HTTP{Base: base, Credentials: client.Credentials{User: "writer", Password: writerPass}}
	if _, err := w.Publish(ctx, "orders.eu", broker.Message{Body: []byte("order 1")}); err != nil {
		t.Fatalf("writer publish: %v", err)
	}
	_, err = w.Receive(ctx, "orders.eu", broker.ReceiveOptions{Max: 1})
	if want := `forbidden: user "writer" has no consume permission on queue "orders.eu"`; !errors.Is(err, broker.ErrForbidden) || err.Error() != want {
		t.Fatalf("writer receive: %v, want %q", err, want)
	}
	bad := &client.HTTP{Base: base, Credentials: client.Credentials{User: "writer", Password: "nope"}}
	if _, err := bad.Publish(ctx, "orders.eu", broker.Message{Body: []byte("x")}); !errors.Is(err, broker.ErrUnauthorized) {
		t.Fatalf("wrong password: %v", err)
	}

	r := &client.HTTP{Base: base, Credentials: client.Credentials{Token: readerToken}}
	ds, err := r.Receive(ctx, "orders.eu", broker.ReceiveOptions{Max: 1})
	if err != nil || len(ds) != 1 {
		t.Fatalf("reader receive: %v %v", ds, err)
	}
	if _, err := r.ReadStream(ctx, "payments", client.FromStart(), broker.ReadOptions{Max: 1}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("reader stream read: %v", err)
	}
	if err := r.DeleteQueue(ctx, "orders.eu"); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("reader delete: %v", err)
	}

	// Listings show only what the user holds a permission on.
	req, _ := http.NewRequest("GET", base+"/v1/queues", nil)
	req.Header.Set("Authorization", "Bearer "+readerToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Queues []string }
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if strings.Join(list.Queues, ",") != "orders.eu,orders.eu.dlq" {
		t.Fatalf("reader sees queues %v, want only orders.* (not audit)", list.Queues)
	}
	req, _ = http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+readerToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), `no manage permission on \"*\"`) {
		t.Fatalf("reader /metrics: %s %s", resp.Status, b)
	}
}

// A wrong password waits (failure_delay) on its own connection only: a
// good login that starts after it finishes first.
func TestWrongPasswordDoesNotSlowOthers(t *testing.T) {
	_, addr := startBroker(t, Options{ConfigFile: authConfig(t, "  failure_delay: 6s\n", "")})
	ctx := testCtx(t)
	badDone := make(chan error, 1)
	go func() {
		_, err := client.Dial(ctx, addr, client.Options{DialTimeout: 15 * time.Second, Credentials: client.Credentials{User: "writer", Password: "guess"}})
		badDone <- err
	}()
	// The bad login is answered only after its delay; the good one,
	// started after it, does not wait for it.
	w, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{User: "writer", Password: writerPass}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Publish(ctx, "orders.eu", broker.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-badDone:
		t.Fatalf("the wrong password was answered (%v) before the good login finished: its delay is not its own", err)
	default:
	}
	if err := <-badDone; !errors.Is(err, broker.ErrUnauthorized) {
		t.Fatalf("wrong password: %v", err)
	}
}

// TLS with a client CA: a certificate of that CA logs in as its user on
// both protocols; one of another CA fails the handshake.
func TestTLSClientCertificates(t *testing.T) {
	ca, other := newTestCA(t, "broker-ca"), newTestCA(t, "other-ca")
	srvCert, srvKey := ca.issue(t, "broker", true)
	cliCert, cliKey := ca.issue(t, "ops-client", false)
	badCert, badKey := other.issue(t, "ops-client", false)
	tlsBlock := fmt.Sprintf("tls:\n  cert: %s\n  key: %s\n  client_ca: %s\n", srvCert, srvKey, ca.file)
	httpAddr, addr := startBroker(t, Options{ConfigFile: authConfig(t, "  max_unauthenticated: 16\n", tlsBlock)})
	ctx := testCtx(t)

	// A handshake flood first: connections that send half a ClientHello
	// (or nothing) and stall. They are capped, the oldest closed, so the
	// real clients below still get through.
	for i := 0; i < 60; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 {
			c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a record header claiming 512 bytes, then one
		}
	}

	good, err := client.LoadTLS(ca.file, cliCert, cliKey, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, addr, client.Options{TLS: good})
	if err != nil {
		t.Fatalf("certificate login: %v", err)
	}
	defer c.Close()
	if err := c.DeclareQueue(ctx, "ops.q", broker.QueueConfig{}); err != nil {
		t.Fatalf("ops (certificate) declare: %v", err)
	}
	if _, err := c.Publish(ctx, "ops.q", broker.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	h := &client.HTTP{Base: "https://" + httpAddr, Client: &http.Client{Transport: &http.Transport{TLSClientConfig: good}}}
	if _, err := h.Publish(ctx, "ops.q", broker.Message{Body: []byte("y")}); err != nil {
		t.Fatalf("HTTPS with the client certificate: %v", err)
	}

	wrong, err := client.LoadTLS(ca.file, badCert, badKey, "")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// The refusal is final: Dial returns it rather than redialling until
	// the context ends (it did, with "context deadline exceeded (last
	// error: ...)").
	if _, err := client.Dial(ctx, addr, client.Options{TLS: wrong}); err == nil || !strings.Contains(err.Error(), "certificate") || ctx.Err() != nil {
		t.Fatalf("a certificate of another CA: %v (context: %v), want the handshake's refusal", err, ctx.Err())
	}
	// And so is a broker certificate this client cannot verify.
	otherRoots, err := client.LoadTLS(other.file, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Dial(ctx, addr, client.Options{TLS: otherRoots}); err == nil || !strings.Contains(err.Error(), "certificate") || ctx.Err() != nil {
		t.Fatalf("a broker certificate of another CA: %v (context: %v), want the verification error", err, ctx.Err())
	}
	hw := &client.HTTP{Base: "https://" + httpAddr, Client: &http.Client{Transport: &http.Transport{TLSClientConfig: wrong}}}
	if _, err := hw.Publish(ctx, "ops.q", broker.Message{Body: []byte("z")}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("HTTPS with a certificate of another CA: %v", err)
	}
	// Plain TCP to a TLS listener gets nowhere.
	if _, err := client.Dial(short, addr, client.Options{Credentials: client.Credentials{Token: readerToken}}); err == nil {
		t.Fatal("plain TCP to the TLS listener logged in")
	}
	// A password user over TLS without a client certificate.
	noCert, _ := client.LoadTLS(ca.file, "", "", "")
	w, err := client.Dial(ctx, addr, client.Options{TLS: noCert, Credentials: client.Credentials{User: "writer", Password: writerPass}})
	if err != nil {
		t.Fatalf("password over TLS: %v", err)
	}
	w.Close()
}

// An attacker's flood of silent connections and half-sent Auth frames
// does not stop an authenticated client's publishes, nor a new client
// from logging in: pending connections are capped (the oldest closed)
// and each has auth_timeout to log in.
func TestUnauthenticatedFloodDoesNotStarveClients(t *testing.T) {
	_, addr := startBroker(t, Options{ConfigFile: authConfig(t, "  max_unauthenticated: 16\n  auth_timeout: 2s\n", "")})
	ctx := testCtx(t)
	w, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{User: "writer", Password: writerPass}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var published atomic.Int64
	stop := make(chan struct{})
	pubErr := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				pubErr <- nil
				return
			default:
			}
			if _, err := w.Publish(ctx, "orders.eu", broker.Message{Body: []byte("x")}); err != nil {
				pubErr <- err
				return
			}
			published.Add(1)
		}
	}()

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	partial := wire.AppendFrame(nil, wire.Auth, 1, wire.AppendAuthReq(nil, &wire.AuthReq{Method: wire.AuthPassword, User: "writer", Secret: []byte("x")}))
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, c)
		if i%2 == 0 {
			c.Write(partial[:len(partial)-3]) // the header and most of the body, never the rest
		}
	}
	// The first flood connections were closed to make room.
	expectClosed(t, flood[0], 5*time.Second)
	// A new client logs in during the flood and publishes.
	n, err := client.Dial(ctx, addr, client.Options{Credentials: client.Credentials{Token: readerToken}})
	if err != nil {
		t.Fatalf("login during the flood: %v", err)
	}
	n.Close()
	// The newest flood connections, within the cap, end at auth_timeout.
	expectClosed(t, flood[len(flood)-1], 10*time.Second)
	before := published.Load()
	deadline := time.Now().Add(10 * time.Second)
	for published.Load() < before+20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	if err := <-pubErr; err != nil {
		t.Fatalf("publishing during the flood: %v", err)
	}
	if published.Load() < before+20 {
		t.Fatalf("publishes stalled: %d before the flood ended, %d after", before, published.Load())
	}
}

// Without an auth block the broker refuses an address other machines
// can reach, and says why.
func TestOpenBrokerRefusesNonLoopback(t *testing.T) {
	err := Run(context.Background(), Options{Data: t.TempDir(), HTTP: "0.0.0.0:0"}, io.Discard, io.Discard)
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), `--http "0.0.0.0:0" is not a loopback address and the broker has no auth: block`) {
		t.Fatalf("open broker on 0.0.0.0: %v", err)
	}
}

// The auth and tls blocks' mistakes are located like every other key.
func TestAuthConfigErrors(t *testing.T) {
	_, err := ParseFile("b.yaml", []byte(`auth:
  users:
    bob:
      password_hash: hunter2
      tokens: [plain-token-in-the-file]
      publish: ["orders*x", "queues:a"]
    eve: {}
  auth_timeout: 2m
tls:
  client_ca: ca.pem
  require_client_cert: true
`))
	for _, want := range []string{
		`b.yaml:4:7: auth.users.bob.password_hash: not a bcrypt hash`,
		`b.yaml:5:16: auth.users.bob.tokens[0]: an inline token would be a secret in the config file`,
		`auth.users.bob.publish[0]: pattern "orders*x": "*" only at the end`,
		`auth.users.bob.publish[1]: pattern "queues:a": unknown kind "queues"`,
		`auth.users.eve: no credential`,
		`auth.auth_timeout: 2m0s: must be between 0 (default 5s) and 1m`,
		`tls.cert: missing`,
		`tls.key: missing`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") && !strings.Contains(err.Error(), "not a bcrypt") {
		t.Error("the error shows the password")
	}
}
