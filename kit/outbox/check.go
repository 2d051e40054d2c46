package outbox

import (
	"fmt"
	"strings"
	"unicode/utf8"

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
		// Stored in text columns (the key also in an index): what
		// PostgreSQL refuses is refused on SQLite too.
		if !isText(m.ID) || !isText(m.Key) || len(m.Key) > MaxKey {
			return fmt.Errorf("outbox: message %d (%.100q) for %q: id and key must be UTF-8 text without NUL bytes, the key at most %d bytes (it has %d)", i, m.ID, dest, MaxKey, len(m.Key))
		}
	}
	return nil
}

// MaxKey is the longest message key Add takes: keys are a primary key,
// and a PostgreSQL index entry holds about 2.7 KB at most.
const MaxKey = 1000

func isText(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }
