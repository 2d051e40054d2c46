package jetstream

import (
	"net/textproto"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/broker"
)

// A message's own headers (often copied from outside input) must not
// pose as the adapter's control headers: "sy-expires: 1" would make the
// consumer drop the message as expired, "Sy-Deliver-At" in the far
// future would hold it forever, and "Nats-Msg-Id" would make JetStream
// deduplicate other publishers' messages away. NATS canonicalizes header
// names on the way in, so every spelling counts.
func TestUserHeadersCannotForgeAdapterHeaders(t *testing.T) {
	now := time.Now()
	m := broker.Message{Body: []byte("x"), Headers: map[string]string{
		"sy-expires": "1", "SY-DELIVER-AT": "9223372036854775807", "Sy-Deliver-At": "9223372036854775807",
		"nats-msg-id": "someone-elses-id", "Sy-Key": "k", "Sy-No-Id": "1", "Trace": "t1",
	}}
	nm := toNats("s", m, now)
	for k := range nm.Header {
		switch canon(k) {
		case HeaderExpires, HeaderDeliverAt, natsjs.MsgIDHeader, HeaderKey, headerNoID:
			t.Errorf("user header %q reached JetStream as a control header", k)
		}
	}
	if nm.Header.Get("Trace") != "t1" {
		t.Errorf("an ordinary header was lost: %v", nm.Header)
	}
	// The adapter's own values still go out.
	m.ID, m.Key, m.Delay, m.TTL = "id1", "key1", time.Second, time.Minute
	nm = toNats("s", m, now)
	if nm.Header.Get(natsjs.MsgIDHeader) != "id1" || nm.Header.Get(HeaderKey) != "key1" ||
		nm.Header.Get(HeaderDeliverAt) == "" || nm.Header.Get(HeaderExpires) == "" || len(nm.Header) != 5 {
		t.Errorf("adapter headers: %v", nm.Header)
	}
}

func canon(k string) string { return textproto.CanonicalMIMEHeaderKey(k) }
