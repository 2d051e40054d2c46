package broker_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/config"
)

// TestSettingErrorsNameTheirKey: each problem of a settings Validate names
// its key (a config.KeyPather, so a config file locates it at that key),
// and its text is "KEY VALUE: problem" as the APIs return it.
func TestSettingErrorsNameTheirKey(t *testing.T) {
	for _, c := range []struct {
		err       error
		key, text string
	}{
		{broker.QueueConfig{Overflow: "drop"}.Validate(), "overflow", `overflow "drop": want reject or block`},
		{broker.QueueConfig{MaxDeliveries: -1}.Validate(), "max_deliveries", "max_deliveries -1: must not be negative"},
		{broker.TopicConfig{Queues: []string{"ok", "a b"}}.Validate(), "queues[1]", `queues[1] "a b": invalid queue name`},
		{broker.StreamConfig{MaxBytes: -2}.Validate(), "max_bytes", "max_bytes -2: must not be negative"},
		{broker.CheckSegmentBytes("segment_bytes", 1), "segment_bytes", "segment_bytes 1: must be between"},
	} {
		var kp config.KeyPather
		if !errors.As(c.err, &kp) || kp.KeyPath() != c.key || !strings.HasPrefix(c.err.Error(), c.text) {
			t.Errorf("%v: key path %v, want %q and text %q", c.err, kp, c.key, c.text)
		}
	}
	src := config.NewSource("b.yaml")
	if got := src.Wrap("queues.orders", broker.QueueConfig{Overflow: "drop"}.Validate()).Error(); got != `b.yaml: queues.orders.overflow: "drop": want reject or block` {
		t.Errorf("wrapped: %s", got)
	}
}
