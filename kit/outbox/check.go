package outbox

import (
	"fmt"

	"github.com/switchyard/switchyard/broker"
)

// checkMessages refuses, at Add, messages no broker accepts: once
// committed they would fail every relay round and hold back their
// destination's messages for ever.
func checkMessages(dest string, msgs []broker.Message) error {
	for i := range msgs {
		m := &msgs[i]
		if m.TTL < 0 || m.TTL > broker.MaxMessageTTL || m.Delay > broker.MaxMessageTTL {
			return fmt.Errorf("outbox: message %d (%q) for %q: ttl %s, delay %s: expected each between 0 and %s", i, m.ID, dest, m.TTL, m.Delay, broker.MaxMessageTTL)
		}
		if n := m.Size(); n > broker.MaxMessageSizeLimit {
			return fmt.Errorf("outbox: message %d (%q) for %q: %d bytes (id, key, headers and body): no queue accepts more than %d", i, m.ID, dest, n, broker.MaxMessageSizeLimit)
		}
	}
	return nil
}
