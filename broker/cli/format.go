package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// message is one message as the CLI prints it: every kind (queue
// delivery, topic message, stream message) fills what it has.
type message struct {
	Queue      string            `json:"queue,omitempty"`
	Topic      string            `json:"topic,omitempty"`
	Stream     string            `json:"stream,omitempty"`
	ID         string            `json:"id,omitempty"`
	Offset     uint64            `json:"offset,omitempty"`
	Receipt    string            `json:"receipt,omitempty"`
	Deliveries int               `json:"deliveries,omitempty"`
	MsgID      string            `json:"msg_id,omitempty"`
	Key        string            `json:"key,omitempty"`
	Time       time.Time         `json:"time"`
	Headers    map[string]string `json:"headers,omitempty"`
	// Body is the payload when it is valid UTF-8; otherwise BodyBase64
	// holds it in standard base64.
	Body       *string `json:"body,omitempty"`
	BodyBase64 string  `json:"body_base64,omitempty"`
	size       int
}

// timeFormat shows times to the millisecond, in UTC.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func newMessage(body []byte) message {
	m := message{size: len(body)}
	if utf8.Valid(body) {
		s := string(body)
		m.Body = &s
	} else {
		m.BodyBase64 = base64.StdEncoding.EncodeToString(body)
	}
	return m
}

// printMessage prints m as one JSON line or as a readable block:
//
//	orders #1  receipt=1.1.1 deliveries=1 msg_id=order-1 key=customer-7 time=2026-12-04T13:55:00.123Z
//	  kind: created
//	{"item":"book"}
func (e *env) printMessage(m message) {
	if e.json {
		e.printJSON(m)
		return
	}
	var b strings.Builder
	switch {
	case m.Queue != "":
		fmt.Fprintf(&b, "%s #%s ", m.Queue, m.ID)
	case m.Topic != "":
		fmt.Fprintf(&b, "%s #%s ", m.Topic, m.ID)
	default:
		fmt.Fprintf(&b, "%s @%d ", m.Stream, m.Offset)
	}
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	field("receipt", m.Receipt)
	if m.Deliveries > 0 {
		field("deliveries", fmt.Sprint(m.Deliveries))
	}
	field("msg_id", m.MsgID)
	field("key", m.Key)
	if !m.Time.IsZero() {
		field("time", m.Time.UTC().Format(timeFormat))
	}
	b.WriteByte('\n')
	for _, k := range sortedKeys(m.Headers) {
		fmt.Fprintf(&b, "  %s: %s\n", k, m.Headers[k])
	}
	if m.Body != nil {
		b.WriteString(*m.Body)
		if !strings.HasSuffix(*m.Body, "\n") {
			b.WriteByte('\n')
		}
	} else {
		fmt.Fprintf(&b, "[binary body, %d bytes, base64] %s\n", m.size, m.BodyBase64)
	}
	b.WriteByte('\n')
	io.WriteString(e.stdout, b.String())
}

// printJSON writes v as one line of JSON.
func (e *env) printJSON(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		data, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	e.stdout.Write(append(data, '\n'))
}

// note prints a human remark to stderr (never in the way of --json
// output on stdout).
func (e *env) note(format string, args ...any) {
	fmt.Fprintf(e.stderr, format+"\n", args...)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
